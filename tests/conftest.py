"""Markers, optional-extra skips and the fixtures several test files share.

Markers (also listed in pyproject's [tool.pytest.ini_options]; --strict-markers rejects others):

  slow     renders with Blender, trains a model, starts Ray, drives a browser, or otherwise takes
           more than about 2 s. `pytest -m "not slow"` is the quick subset: it spreads its files over
           the cores (pytest-xdist, one worker per core) unless -n is given; the whole suite runs
           in one process (its renders, trainings and Ray clusters already use every core).
  render, models, cluster, study, dev, docs
           the extra a test needs (pyproject's optional dependencies); `render` also covers a test
           whose render pool's workers import bpy. Without it the test is skipped, naming the extra.

A module that imports an extra's package at its top calls `extras.imported(extra, module)`: the
same table, the same reason (tests/extras.py).
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
from extras import EXTRAS, missing, reason

if "PYTEST_XDIST_WORKER" in os.environ:
    # One worker per core: torch's own thread pool on top would put two threads on each core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

MARKERS = {
    "slow": "renders with Blender, trains a model, starts Ray, drives a browser, or otherwise takes more than ~2 s "
    "(deselect with -m 'not slow')",
    **{extra: f"needs the {extra} extra (pip install -e '.[{extra}]')" for extra in EXTRAS},
}


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # Runs before xdist's own hook, which turns numprocesses into workers. Half of the quick
    # subset's time is importing torch, scipy and the rest; the other half is many short tests:
    # both halve over two cores. Files stay whole on one worker (their module fixtures are built once).
    quick = (config.option.markexpr or "").replace("'", '"').strip() == "not slow"
    if (quick and config.pluginmanager.has_plugin("xdist") and config.option.numprocesses is None
            and "PYTEST_XDIST_WORKER" not in os.environ and not config.option.collectonly):
        config.option.numprocesses = os.cpu_count() or 1
        config.option.dist = "loadfile"


def pytest_configure(config: pytest.Config) -> None:
    for name, help_text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")


def pytest_collection_finish(session: pytest.Session) -> None:
    # Collection imported torch, Ray, scipy and more: hundreds of thousands of long-lived objects. Freeze
    # them out of the cyclic garbage collector's reach, so that a gc.collect() during a test (as
    # statsmodels' Holm correction does on every call) scans only what the tests create, not
    # the whole heap (about a second per call otherwise).
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    absent = {extra: reason(extra) for extra in EXTRAS if missing(extra)}
    for item in items:
        for extra, why in absent.items():
            if item.get_closest_marker(extra) is not None:
                item.add_marker(pytest.mark.skip(reason=why))


# ---------------------------------------------------------------- waiting without fixed sleeps


def poll_until(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Check `condition` every `interval` s until it holds (True) or `timeout` s have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., bool]:
    """`wait_until(condition, timeout, interval=0.01)`: poll a condition that must become true."""
    return poll_until


# ---------------------------------------------------------------- rendering (test_render_cli, test_ray_*, test_render_pool)


TINY_RENDER_CONFIG = """\
name: tiny
sampler: study2022
seed: 5
resolution: [32, 32]
render: {{samples: 2, denoise: false, subdivision_levels: 1}}
splits:
  train:
    n: {n}
    sampler_args: {{labeling_error: {{bernoulli: 0.5}}}}
  test:
    n: 4
    interventions: [obj_color, bg_color]
"""


@pytest.fixture(scope="session")
def fast_render_settings():
    """Render settings that keep a 32 px render well under a second: 2 samples, no denoising."""
    from two4two.render import RenderSettings

    return RenderSettings(samples=2, denoise=False, subdivision_levels=1)


@pytest.fixture(scope="session")
def tiny_render_config() -> Callable[..., Path]:
    """`tiny_render_config(directory, n=8, name="tiny.yaml")`: write a 32 px study2022 config with
    `n` train samples and a 4-sample test split with two intervention splits; returns its path."""

    def write(directory: Path, n: int = 8, name: str = "tiny.yaml") -> Path:
        path = Path(directory) / name
        path.write_text(TINY_RENDER_CONFIG.format(n=n))
        return path

    return write


@pytest.fixture(scope="session")
def dataset_files() -> Callable[[Path], dict[str, bytes]]:
    """`dataset_files(root)`: every file of a rendered dataset by relative path (bytes), without the
    manifest, the lock file and the overview images, to compare two renders of the same config byte for byte."""

    def tree(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(Path(root).rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", ".lock") and not p.name.startswith("overview")
        }

    return tree


@pytest.fixture(scope="session")
def kill_render_mid_run() -> Callable[..., None]:
    """`kill_render_mid_run(cmd, jsonl, at_least=3)`: start the render command `cmd` in a session of
    its own, wait until `jsonl` holds `at_least` lines (at most 180 s), then SIGKILL the whole
    session (the CLI and its Blender workers) and reap it. The caller checks where it stopped."""

    def run(cmd: list[str], jsonl: Path, at_least: int = 3, timeout: float = 180) -> None:
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            poll_until(lambda: jsonl.exists() and jsonl.read_text().count("\n") >= at_least, timeout)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    return run


# ---------------------------------------------------------------- parameter-only datasets (test_importance, test_answer_key)


@pytest.fixture(scope="session")
def parameter_dataset():
    """`parameter_dataset(root, interventions, n_test=400, n_train=2000, seed=1)`: write the
    parameters.jsonl of every split of a study2022 dataset with a train split and a test split with
    the given intervention splits, without images (for test doubles that read parameters); returns
    the planned job (its splits and split_info)."""
    from two4two.config import parse_config
    from two4two.dataset import plan_config
    from two4two.parameters import write_jsonl

    def write(root: Path, interventions, n_test: int = 400, n_train: int = 2000, seed: int = 1):
        config = parse_config({
            "sampler": "study2022",
            "seed": seed,
            "splits": {"train": {"n": n_train}, "test": {"n": n_test, "interventions": list(interventions)}},
        })
        job = plan_config(config)
        for name, params in job.splits.items():
            write_jsonl(Path(root) / name / "parameters.jsonl", params)
        return job

    return write
