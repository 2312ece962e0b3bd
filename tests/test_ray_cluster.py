"""A two-node Ray cluster on loopback: work spreads over both nodes and survives losing one.

The nodes are started with `ray start` in their own temporary directories and sessions and
stopped by the process ids this test started (the members of those sessions), never with
`ray stop`, which would hit every Ray cluster on the machine.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from extras import imported

from two4two.dataset import SplitWriter
from two4two.sampling import Sampler

ray = imported("cluster", "ray")

from two4two.render.ray_pool import RayRenderPool  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.render]  # starts a two-node Ray cluster and renders

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Every live process of a session: `ray start` runs in a new one, and all it launches stays in it."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # session id; zombies are already dead
                pids.append(int(entry.name))
    return pids


def cmdline_pids(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def kill_session(sid: int) -> bool:
    """SIGKILL every process of the session; True once none is left (children may still be spawning)."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return session_pids(sid) == []


@pytest.fixture
def cluster(monkeypatch, wait_until):
    """Head and worker node, one CPU each, on 127.0.0.1; yields (address, worker temp dir)."""
    tmp = tempfile.mkdtemp(prefix="t2t-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    # The same auth mode for head, worker and this driver (which read it when importing ray).
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    env = {
        **os.environ,
        # Declare a node dead ~1.5 s after its raylet stops answering (default: ~30 s).
        "RAY_health_check_period_ms": "500",
        "RAY_health_check_timeout_ms": "500",
        "RAY_health_check_failure_threshold": "3",
    }
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    nodes = [
        ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={tmp}/head"],
        [f"--address={address}", f"--temp-dir={tmp}/worker"],
    ]
    sessions = []
    try:
        for args in nodes:
            # A new session per node: its id is the pid we started, and every process of the node keeps it.
            proc = subprocess.Popen([RAY, "start", *args, *common], env=env, start_new_session=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            sessions.append(proc.pid)
            output, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, output
        yield address, f"{tmp}/worker"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for sid in sessions:
            # Kill until the session is empty: processes may still be spawning children while we kill.
            wait_until(lambda: kill_session(sid), timeout=30, interval=0.05)
        assert [pid for sid in sessions for pid in session_pids(sid)] == []
        assert cmdline_pids(tmp) == []
        shutil.rmtree(tmp, ignore_errors=True)


def test_two_nodes_render_and_losing_one_loses_nothing(cluster, tmp_path, fast_render_settings):
    address, worker_dir = cluster
    settings = fast_render_settings
    params = Sampler(resolution=(32, 32)).sample(40, 3).to_list()
    writer = SplitWriter(tmp_path / "train", params)
    seen, nodes, killed_at = [], [], None
    with RayRenderPool(settings=settings, address=address, batch_size=2) as pool:
        assert pool.wait_ready(timeout=120) == 2  # one actor per node (one CPU each)
        for result in pool.imap(params):
            writer.write(result.index, result.image, result.mask)
            seen.append(result.index)
            nodes.append(result.node)
            # The worker node goes down as soon as both nodes have delivered: it still holds work then
            # (the pool keeps few batches in flight per actor, and rendering takes far longer than this loop).
            if killed_at is None and len(set(nodes)) == 2:
                worker_node = next(n["NodeID"] for n in ray.nodes() if worker_dir in n["ObjectStoreSocketName"])
                (raylet,) = [p for p in cmdline_pids(worker_dir) if b"raylet/raylet" in Path(f"/proc/{p}/cmdline").read_bytes()]
                # The worker node goes down mid-run: its raylet and its actor's process together. The
                # raylet alone is not enough: an actor outlives its raylet for a while and can hand in
                # every batch it holds (small results travel to the driver directly), so the pool
                # would see no loss (0 restarts, once in a fresh-clone CI run).
                actors = [pid for pid, node in pool.actor_nodes().items() if node == worker_node]
                assert actors, "the worker node should run one of the pool's actors"
                for pid in [raylet, *actors]:
                    os.kill(pid, signal.SIGKILL)
                killed_at = len(seen)
        assert pool.n_workers == 2 and pool.restarts >= 1
    writer.close()
    assert killed_at is not None and killed_at < len(params) // 2, "both nodes should render well before the end"
    assert worker_node in nodes[:killed_at]
    assert sorted(seen) == list(range(len(params)))  # every sample exactly once
    assert writer.complete and (tmp_path / "train" / "parameters.jsonl").read_text().count("\n") == len(params)
    assert sorted(p.name for p in (tmp_path / "train" / "images").iterdir()) == sorted(f"{p.id}.png" for p in params)
