"""Chaos soak: a 5 000-image render survives killed workers and a killed CLI, and ends byte-identical.

    python benchmarks/soak.py [--n 5000] [--every 2 6] [--cli-kills 2] [--workers 2]

1. renders the config undisturbed (benchmarks/results/soak/reference; reused once complete);
2. renders it again with `two4two render --resume` while this script SIGKILLs a random render
   worker every few seconds (--every: uniform bounds in seconds; only workers that finished
   starting, so each kill lands on a worker with a sample in flight) and SIGKILLs the whole CLI
   (its process group, workers included) --cli-kills times, at evenly spaced fractions of the
   split, restarting it with --resume each time;
3. prints images, worker kills, CLI kills, restarts, duplicates, lost samples, whether `two4two
   verify` passes and whether every file is byte-identical to the reference.

Resumable: both renders are `--resume` renders, and the counts of an interrupted soak are kept
in benchmarks/results/soak/state.json (delete the folder to start over). Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from two4two.layout import parameters_path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "soak"
CONFIG = """\
# The soak's dataset: study2022 at 64 px, the size of the paper-table datasets' images.
name: soak_64px
sampler: study2022
seed: 77
resolution: [64, 64]
splits:
  train: {{n: {n}}}
"""


def render_cmd(config: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "two4two.cli", "render", str(config), "-o", str(out), "--resume", "--workers", str(workers)]


def lines(jsonl: Path) -> list[str]:
    return jsonl.read_text().splitlines() if jsonl.exists() else []


def ready_workers(cli_pid: int, min_age: float) -> list[int]:
    """The CLI's child processes that have lived at least `min_age` seconds (Blender loaded)."""
    try:
        children = Path(f"/proc/{cli_pid}/task/{cli_pid}/children").read_text().split()
    except OSError:
        return []
    ticks, now = os.sysconf("SC_CLK_TCK"), time.clock_gettime(time.CLOCK_BOOTTIME)
    out = []
    for pid in map(int, children):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        started = int(stat.rsplit(")", 1)[1].split()[19]) / ticks
        if b"spawn_main" in cmdline and now - started >= min_age:  # a render worker, not the resource tracker
            out.append(pid)
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", ".lock") and not p.name.startswith("overview")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--every", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"))
    parser.add_argument("--cli-kills", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    config = OUT / "soak.yaml"
    config.write_text(CONFIG.format(n=args.n))
    state_path = OUT / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {
        "worker_kills": 0, "cli_kills": 0, "restarts": 0, "seconds": 0.0, "n": args.n}
    if state["n"] != args.n:
        raise SystemExit(f"{OUT}: an earlier soak of {state['n']} images; delete the folder to soak {args.n}")
    save = lambda: state_path.write_text(json.dumps(state, indent=2) + "\n")  # noqa: E731

    reference, soaked = OUT / "reference", OUT / "soaked"
    t0 = time.perf_counter()
    subprocess.run(render_cmd(config, reference, args.workers), check=True)
    print(f"reference: {time.perf_counter() - t0:.0f} s")

    rng = random.Random(args.seed)
    jsonl = parameters_path(soaked, "train")
    kill_at = [args.n * (k + 1) // (args.cli_kills + 1) for k in range(args.cli_kills)][state["cli_kills"]:]
    t0 = time.perf_counter() - state["seconds"]
    while True:
        # stderr to a file, not a pipe: an undrained pipe fills with the progress bar and blocks
        # the CLI mid-render (the first 5 000-image soak hung 5 samples before the end).
        with (OUT / "cli.log").open("a") as log:
            cli = subprocess.Popen(render_cmd(config, soaked, args.workers), start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=log)
        next_kill = time.monotonic() + rng.uniform(*args.every)
        while cli.poll() is None:
            time.sleep(0.2)
            done = len(lines(jsonl))
            if kill_at and done >= kill_at[0]:
                os.killpg(cli.pid, signal.SIGKILL)  # the CLI and its workers, mid-write
                cli.wait()
                kill_at.pop(0)
                state["cli_kills"] += 1
                print(f"killed the CLI at {done} lines")
                break
            if time.monotonic() >= next_kill:
                victims = ready_workers(cli.pid, min_age=4.0)
                if victims:
                    os.kill(rng.choice(victims), signal.SIGKILL)
                    state["worker_kills"] += 1
                next_kill = time.monotonic() + rng.uniform(*args.every)
            state["seconds"] = time.perf_counter() - t0
            save()
        if cli.returncode == 0:
            break
        if cli.returncode not in (-signal.SIGKILL,):
            raise SystemExit(f"the render failed (exit {cli.returncode}): {(OUT / 'cli.log').read_text()[-2000:]}")
        state["restarts"] += 1
        save()
    state["seconds"] = time.perf_counter() - t0
    save()

    from two4two.dataset.verify import verify

    report = verify(soaked, progress=False)
    ids = [json.loads(line)["id"] for line in lines(jsonl)]
    planned = [json.loads(line)["id"] for line in lines(parameters_path(reference, "train"))]
    identical = tree(soaked) == tree(reference)
    print(f"\nsoak of {args.n} images at 64 px, {args.workers} workers: {state['seconds'] / 60:.1f} min under chaos")
    print(f"  worker kills {state['worker_kills']}, CLI kills {state['cli_kills']}, restarts {state['restarts']}")
    print(f"  duplicates {len(ids) - len(set(ids))}, lost {len(set(planned) - set(ids))}, "
          f"verify {'passes' if report.ok else 'FAILS: ' + report.summary()}, identical to the undisturbed run: {'yes' if identical else 'NO'}")


if __name__ == "__main__":
    main()
