"""Load test of the study runner: N participants at once against `two4two study serve` on loopback.

    python benchmarks/study_load.py [--participants 50] [--server-threads 8]

Writes a small test bundle to a temporary directory, starts `two4two study serve` on a free
127.0.0.1 port (a separate process, as researchers run it), lets every participant walk the
whole study concurrently (one thread and one cookie jar each, httpx; every fifth fails a
comprehension check once), stops the server, exports the responses and checks that every
participant's answers are there exactly once. Prints requests/s and latency percentiles.
"""

from __future__ import annotations

import argparse
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
from study_fixtures import WebParticipant, make_bundle  # noqa: E402  (the tests' bundle and HTTP participant)

from two4two.study.analysis import read_responses  # noqa: E402
from two4two.study.bundle import ATTRIBUTES, load_bundle  # noqa: E402
from two4two.study.storage import export_responses  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_for(i: int) -> dict[str, str]:
    r = random.Random(i)
    return {a: r.choice(["relevant", "irrelevant"]) for a in ATTRIBUTES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--server-threads", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle_dir = make_bundle(tmp / "bundle")
        db, port = tmp / "responses.sqlite", free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "two4two.cli", "study", "serve", str(bundle_dir), "--host", "127.0.0.1",
             "--port", str(port), "--db", str(db), "--threads", str(args.server_threads)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start: {server.stderr.read().decode()[-500:]}")
                time.sleep(0.1)

            latencies: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            start_line = threading.Barrier(args.participants)

            def participant(i: int) -> None:
                p = WebParticipant(url)
                try:
                    start_line.wait()
                    p.complete(answers_for(i), f"Load participant {i:03d}", fail_comprehension=int(i % 5 == 0))
                except Exception as exc:  # noqa: BLE001  (counted and reported)
                    with lock:
                        errors.append(f"{i}: {exc!r}"[:200])
                finally:
                    p.close()
                    with lock:
                        latencies.extend(p.latencies)

            threads = [threading.Thread(target=participant, args=(i,)) for i in range(args.participants)]
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
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = usage.ru_utime + usage.ru_stime  # includes its start-up and shutdown

        out = tmp / "responses.csv"
        export_responses(db, load_bundle(bundle_dir), out)
        responses = read_responses(out) if out.read_text().count("\n") > 1 else []
        seen: dict[tuple[int, str], int] = {}
        wrong = 0
        for r in responses:
            i = int(r.justification.split()[2])
            seen[(i, r.attribute)] = seen.get((i, r.attribute), 0) + 1
            wrong += r.answer != answers_for(i)[r.attribute]
        expected = {(i, a) for i in range(args.participants) for a in ATTRIBUTES}
        exactly_once = set(seen) == expected and all(n == 1 for n in seen.values()) and wrong == 0

    lat = np.array(latencies) * 1000
    print(f"study runner load test: {args.participants} concurrent participants, waitress with {args.server_threads} threads, "
          f"SQLite (WAL, synchronous=FULL), loopback")
    print(f"  requests: {len(lat)} in {wall:.2f} s = {len(lat) / wall:.0f} requests/s "
          f"({args.participants / wall:.1f} completed studies/s)")
    print(f"  latency ms: p50 {np.percentile(lat, 50):.1f}, p95 {np.percentile(lat, 95):.1f}, "
          f"p99 {np.percentile(lat, 99):.1f}, max {lat.max():.1f}")
    print(f"  CPU seconds: server {server_cpu:.1f} (with start-up), clients {client_cpu:.1f}; this machine has "
          f"{os.cpu_count()} cores shared by both")
    print(f"  errors: {len(errors)}; answers exported: {len(responses)} of {len(expected)}; "
          f"every answer exactly once and as sent: {'yes' if exactly_once else 'NO'}")
    for e in errors[:5]:
        print("   ", e)
    if errors or not exactly_once:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
