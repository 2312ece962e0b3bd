"""Load test of the study runner: N participants at once against `two4two study serve` on loopback, per paradigm.

    python benchmarks/study_load.py [--participants 50] [--server-threads 8] [--paradigms ...]

For each paradigm (the 2022 attribute-relevance study and the three trial paradigms) writes a
small test bundle to a temporary directory, starts `two4two study serve` on a free 127.0.0.1
port (a separate process, as researchers run it), lets every participant walk the whole study
concurrently (one thread and one cookie jar each, httpx; in the 2022 study every fifth fails a
comprehension check once), stops the server, exports the responses and checks that every
participant's answers are there exactly once and as sent. Prints requests/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from study_fixtures import WebParticipant, make_bundle, make_trial_bundle  # noqa: E402  (the tests' bundles and HTTP participant)

from two4two.study.responses import read_responses  # noqa: E402
from two4two.study.bundle import ATTRIBUTES, load_bundle  # noqa: E402
from two4two.study.pipeline import export_responses  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_for(i: int) -> dict[str, str]:
    r = random.Random(i)
    return {a: r.choice(["relevant", "irrelevant"]) for a in ATTRIBUTES}


PARADIGMS = ("attribute_relevance", "progressive_reveal", "accept_reject", "guess_output")


def trial_choice(i: int, info: dict) -> str:
    """Participant i's answer on a trial page: a fixed function of who and where, so it can be checked."""
    return info["choices"][(i + len(info["trial"]) + len(info["step"])) % len(info["choices"])]


def run(paradigm: str, participants: int, server_threads: int, tmp: Path) -> dict:
    """One load test: a served bundle of `paradigm`, `participants` concurrent walks, the export checked."""
    trial = paradigm != "attribute_relevance"
    bundle_dir = make_trial_bundle(tmp / paradigm, paradigm, items=12) if trial else make_bundle(tmp / paradigm)
    db, port = tmp / f"{paradigm}.sqlite", free_port()
    url = f"http://127.0.0.1:{port}"
    # The server's log goes to a file: a pipe nobody reads fills up (waitress warns of its task queue
    # under load) and then blocks the server mid-request.
    log = open(tmp / f"{paradigm}_server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "two4two.cli", "study", "serve", str(bundle_dir), "--host", "127.0.0.1",
         "--port", str(port), "--db", str(db), "--threads", str(server_threads)],
        stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT,
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sent: dict[int, list[tuple[str, str, str]]] = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise SystemExit(f"server did not start: {(tmp / f'{paradigm}_server.log').read_text()[-500:]}")
            time.sleep(0.1)

        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        start_line = threading.Barrier(participants)

        def participant(i: int) -> None:
            p = WebParticipant(url)
            own: list[tuple[str, str, str]] = []
            try:
                start_line.wait()
                if trial:
                    def choose(info, i=i):
                        answer = trial_choice(i, info)
                        own.append((info["trial"], info["step"], answer))
                        return answer

                    p.complete_trials(choose)
                else:
                    p.complete(answers_for(i), f"Load participant {i:03d}", fail_comprehension=int(i % 5 == 0))
            except Exception as exc:  # noqa: BLE001  (counted and reported)
                with lock:
                    errors.append(f"{i}: {exc!r}"[:200])
            finally:
                p.close()
                with lock:
                    latencies.extend(p.latencies)
                    sent[i] = own

        threads = [threading.Thread(target=participant, args=(i,)) for i in range(participants)]
        t0, cpu0 = time.perf_counter(), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, client_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime  # includes its start-up and shutdown

    out = tmp / f"{paradigm}.csv"
    bundle = load_bundle(bundle_dir)
    export_responses(db, bundle, out)
    if trial:
        with open(out, newline="") as fh:
            rows = list(csv.DictReader(fh))
        stored: dict[str, list[tuple[str, str, str]]] = {}
        for r in rows:
            stored.setdefault(r["participant_id"], []).append((r["trial"], r["step"], r["answer"]))
        exported, expected = len(rows), sum(len(v) for v in sent.values())
        exactly_once = sorted(stored.values()) == sorted(sent.values()) and len(stored) == participants
    else:
        responses = read_responses(out) if out.read_text().count("\n") > 1 else []
        seen: dict[tuple[int, str], int] = {}
        wrong = 0
        for r in responses:
            i = int(r.justification.split()[2])
            seen[(i, r.attribute)] = seen.get((i, r.attribute), 0) + 1
            wrong += r.answer != answers_for(i)[r.attribute]
        keys = {(i, a) for i in range(participants) for a in ATTRIBUTES}
        exported, expected = len(responses), len(keys)
        exactly_once = set(seen) == keys and all(n == 1 for n in seen.values()) and wrong == 0
    return {"paradigm": paradigm, "latencies": np.array(latencies) * 1000, "wall": wall, "client_cpu": client_cpu,
            "server_cpu": server_cpu, "errors": errors, "exported": exported, "expected": expected, "exactly_once": exactly_once}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--server-threads", type=int, default=8)
    parser.add_argument("--paradigms", nargs="+", choices=PARADIGMS, default=list(PARADIGMS))
    args = parser.parse_args()

    print(f"study runner load test: {args.participants} concurrent participants per paradigm, waitress with "
          f"{args.server_threads} threads, SQLite (WAL, synchronous=FULL), loopback; {os.cpu_count()} cores shared by "
          "server and clients")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for paradigm in args.paradigms:
            r = run(paradigm, args.participants, args.server_threads, Path(tmp))
            lat = r["latencies"]
            print(f"{paradigm}:")
            print(f"  requests: {len(lat)} in {r['wall']:.2f} s = {len(lat) / r['wall']:.0f} requests/s "
                  f"({args.participants / r['wall']:.1f} completed studies/s)")
            print(f"  latency ms: p50 {np.percentile(lat, 50):.1f}, p95 {np.percentile(lat, 95):.1f}, "
                  f"p99 {np.percentile(lat, 99):.1f}, max {lat.max():.1f}")
            print(f"  CPU seconds: server {r['server_cpu']:.1f} (with start-up), clients {r['client_cpu']:.1f}")
            print(f"  errors: {len(r['errors'])}; answers exported: {r['exported']} of {r['expected']}; "
                  f"every answer exactly once and as sent: {'yes' if r['exactly_once'] else 'NO'}")
            for e in r["errors"][:5]:
                print("   ", e)
            failed |= bool(r["errors"]) or not r["exactly_once"]
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
