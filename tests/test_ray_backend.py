"""The Ray backend on one machine: same bytes as the local pool, resume across backends, actor death."""

import json
import os
import signal
import subprocess
import sys

import pytest
from extras import imported

from two4two.cli import main
from two4two.config import load_config
from two4two.dataset import plan_config, read_split, run_render_job
from two4two.errors import ParameterError
from two4two.render import RenderError, open_pool
from two4two.sampling import Sampler

ray = imported("cluster", "ray")

from two4two.render.ray_pool import RayRenderPool  # noqa: E402

N = 80  # train samples: enough that an interruption lands mid-run


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) for this module.

    RAY_AUTH_MODE must be the same for Ray's processes and this one, which read it when
    ray was imported (unset means disabled there): say so explicitly, for the CLI runs too.
    """
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE")
    else:
        os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_render_config):
    """The config rendered by the local pool: what every other run must reproduce byte for byte."""
    tmp = tmp_path_factory.mktemp("reference")
    config = tiny_render_config(tmp, n=N)
    out = tmp / "local"
    assert main(["render", str(config), "-o", str(out), "--workers", "1"]) == 0
    return config, out


@pytest.mark.slow  # starts Ray and renders
@pytest.mark.render
def test_ray_output_is_byte_identical_to_the_local_pool(local_ray, reference, tmp_path, dataset_files):
    config, local = reference
    job = plan_config(load_config(config), tmp_path / "ray")
    manifest = run_render_job(job, backend="ray", progress=False)
    assert manifest["status"] == "complete"
    assert dataset_files(tmp_path / "ray") == dataset_files(local)
    local_manifest = json.loads((local / "manifest.json").read_text())
    assert manifest["fingerprint"] == local_manifest["fingerprint"]  # the backend is not part of the identity
    assert manifest["counts"] == local_manifest["counts"]


@pytest.mark.slow  # starts Ray and renders
@pytest.mark.render
def test_resume_local_then_ray_after_kill_9(local_ray, reference, tmp_path, dataset_files, kill_render_mid_run):
    config, local = reference
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "two4two.cli", "render", str(config), "-o", str(out), "--workers", "1"]
    jsonl = out / "train" / "parameters.jsonl"
    kill_render_mid_run(cmd, jsonl, at_least=3)  # the local CLI and its Blender workers, mid-run
    done = jsonl.read_text().count("\n")
    assert 3 <= done < N, "the kill should land mid-run"
    # The CLI on the Ray backend, starting its own local Ray instance.
    result = subprocess.run([*cmd, "--resume", "--backend", "ray"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert dataset_files(out) == dataset_files(local)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.slow  # starts Ray and renders
@pytest.mark.render
def test_resume_ray_then_local_after_an_interrupt(local_ray, reference, tmp_path, monkeypatch, dataset_files):
    config, local = reference
    out = tmp_path / "ds"
    from two4two import dataset

    original_write, written = dataset.SplitWriter.write, []

    def interrupted_write(self, index, image, mask):
        if len(written) == 10:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the Ray render
        written.append(index)
        original_write(self, index, image, mask)

    monkeypatch.setattr(dataset.SplitWriter, "write", interrupted_write)
    assert main(["render", str(config), "-o", str(out), "--backend", "ray"]) == 130  # "interrupted"
    monkeypatch.setattr(dataset.SplitWriter, "write", original_write)
    partial = len(read_split(out, "train"))
    assert 0 < partial <= 10
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    assert main(["render", str(config), "-o", str(out), "--workers", "1", "--resume"]) == 0
    assert dataset_files(out) == dataset_files(local)


@pytest.mark.slow  # starts Ray and renders
@pytest.mark.render
def test_a_killed_actor_is_replaced_and_nothing_is_lost(local_ray, fast_render_settings):
    params = Sampler(resolution=(32, 32)).sample(30, 1).to_list()
    seen, killed = [], None
    with RayRenderPool(2, fast_render_settings, batch_size=2) as pool:
        # Both actors rendering from the first batch on. No pacing of the consumer is needed: the
        # pool hands out work only while it is iterated, at most prefetch (2) batches of 2 per
        # actor ahead, so at the 4th result at most 12 of the 30 samples have left the queue and
        # the kill always lands mid-run, on an actor with work in flight.
        pool.wait_ready(timeout=300)
        for result in pool.imap(params):
            seen.append(result.index)
            if len(seen) == 4:
                killed = pool.worker_pids()[0]
                os.kill(killed, signal.SIGKILL)
        assert pool.restarts >= 1
        assert killed not in pool.worker_pids()
    assert sorted(seen) == list(range(len(params)))  # every sample exactly once


@pytest.mark.slow  # starts Ray and renders
@pytest.mark.render
def test_every_result_names_its_node_and_actor_memory_is_reported(local_ray, fast_render_settings):
    params = Sampler(resolution=(32, 32)).sample(6, 2).to_list()
    node = ray.get_runtime_context().get_node_id()
    with RayRenderPool(1, fast_render_settings) as pool:
        results = list(pool.imap(params))
        assert list(pool.actor_nodes()) == pool.worker_pids() and os.getpid() not in pool.worker_pids()
        (rss,) = pool.worker_rss_mb.values()
    assert {r.node for r in results} == {node}
    assert 50 < rss < 4000  # MB: Blender's scene in a Ray worker


def test_user_errors_name_the_option(tmp_path, capsys, monkeypatch, tiny_render_config, fast_render_settings):
    config = tiny_render_config(tmp_path, n=2)
    assert main(["render", str(config), "-o", str(tmp_path / "a"), "--address", "127.0.0.1:1"]) == 2
    assert "address: only used with backend 'ray'" in capsys.readouterr().err
    assert main(["render", str(config), "-o", str(tmp_path / "b"), "--backend", "ray", "--address", "127.0.0.1:1"]) == 2
    assert "address: no Ray cluster answers at '127.0.0.1:1'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written
    with pytest.raises(ParameterError, match="backend: expected one of local, ray, got 'slurm'"):
        open_pool("slurm")
    with pytest.raises(ParameterError, match="threads: expected at least 1 with backend 'ray'"):
        RayRenderPool(1, fast_render_settings, threads=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(RenderError, match=r"pip install 'two4two\[cluster\]'"):
        open_pool("ray")
