"""What every render backend shares: settings, results, errors, validation (the payload a worker
receives is `blender_scripts.payload`'s, the worker side of this contract).

The local process pool (`two4two.render.local_pool`) and the Ray pool
(`two4two.render.ray_pool`) both build on this module and on `Attempts`, the one place
that decides which sample is rendered next and when failures end a run.
"""

from __future__ import annotations

import collections
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from blender_scripts.payload import LOOKS, worker_payload  # noqa: F401  (worker_payload re-exported)
from two4two.errors import ConfigError, ParameterError, Two4TwoError
from two4two.parameters import FIELD_NAMES, SceneParameters, check_value
from two4two.schema import Fields, setting


class RenderError(Two4TwoError, RuntimeError):
    """A sample could not be rendered even after retries, or workers cannot start."""


@dataclass(frozen=True)
class RenderSettings:
    """How each image is rendered. Part of a dataset's identity (stored in its manifest)."""

    # 16 samples and the mask-aware denoiser: the silhouette's edge ring closer to the original's
    # than a plain 128-sample render through a 1 px box (2.99/255 against 3.32), background grain
    # below the original's (benchmarks/fidelity.py, benchmarks/render.py). With 8 samples the
    # shaded rims' bounce light is too sparse to estimate: 4.4 pixels per 128 px image more than
    # 40/255 darker than the original's, 16: 0.32.
    # The denoiser estimates each object from its own pixels only: isolation holds.
    samples: int = setting(16, "Cycles samples per pixel", low=1, high=65536)
    denoise: bool = setting(True, "the mask-aware denoiser, which keeps attribute isolation")
    # 3 gives silhouette IoU 0.9988 with the original's renders (5: 1.0000) at half the render
    # time (benchmarks/fidelity.py).
    subdivision_levels: int = setting(3, "Catmull–Clark render level of the blocks (the original: 5)", low=0, high=6)
    # "pale": the colormap's sRGB values as linear albedo under Filmic, as the original and
    # the paper's images; "saturated": sRGB→linear albedo under the Standard view.
    look: str = setting("pale", "pale: the original's Filmic look; saturated: sRGB colours under the Standard view",
                         choices=LOOKS)
    # A 1 px box (format 2) draws harder edges than the original's (benchmarks/fidelity.py --experiments).
    pixel_filter_width: float = setting(1.5, "width in px of the Blackman–Harris pixel filter (the original: 1.5)",
                                         low=0.01, high=10, expected="a number of px in [0.01, 10]")

    def __post_init__(self) -> None:
        _checked_settings(asdict(self), "render settings", "", ParameterError)

    @classmethod
    def read(cls, raw: Any, source: str, where: str = "render", error: type[Exception] = ConfigError) -> "RenderSettings":
        """Settings from a mapping (a config's `render:`), each key checked against its declaration."""
        return cls(**_checked_settings({} if raw is None else raw, source, where, error))

    def to_dict(self) -> dict:
        return asdict(self)


def _checked_settings(raw: Any, source: str, where: str, error: type[Exception]) -> dict:
    settings = Fields(raw, source, where, allowed=[f.name for f in fields(RenderSettings)], error=error)
    return {f.name: settings.setting(f) for f in fields(RenderSettings) if f.name in settings.raw}


@dataclass
class RenderResult:
    index: int
    image: np.ndarray  # uint8 H×W×3, sRGB
    mask: np.ndarray  # uint8 H×W, labels 0–8
    params: SceneParameters
    node: str | None = None  # the Ray node that rendered it (backend 'ray'), else None


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """One single-threaded worker per core (capped at 8): on this 2-core machine 2 × 1 thread
    renders ≈ 25 % more images/s than 1 worker × 2 threads (benchmarks/render.py)."""
    return max(1, min(available_cpus(), 8))


def default_threads(workers: int) -> int:
    """Split the cores evenly between workers."""
    return max(1, available_cpus() // workers)


def validate_all(params: Sequence[SceneParameters]) -> None:
    """Re-check every field of every sample before any rendering starts."""
    for i, p in enumerate(params):
        if not isinstance(p, SceneParameters):
            raise ParameterError(f"sample {i}: expected SceneParameters, got {type(p).__name__}")
        try:
            for name in FIELD_NAMES:
                check_value(name, getattr(p, name))
        except ParameterError as exc:
            raise ParameterError(f"sample {i} (id {p.id}): {exc}") from None


class Pool:
    """What both pools are: a context manager whose `imap(params, indices)` streams RenderResults."""

    def __init__(self, settings: RenderSettings | None, timeout: float, startup_timeout: float, max_retries: int,
                 prefetch: int):
        self.settings = settings or RenderSettings()
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.max_retries = max_retries
        self.prefetch = prefetch
        self.restarts = 0
        self.worker_rss_mb: dict = {}  # by worker: its memory after its last sample

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class Attempts:
    """The queue of one `imap` call and its failure counts, shared by both pools.

    A sample that fails more than `max_retries` times ends the run with an error naming
    it; more than `max_startup_failures` workers in a row failing to start end it too.
    """

    def __init__(self, params: Sequence[SceneParameters], indices: Iterable[int] | None, max_retries: int,
                 max_startup_failures: int = 3):
        self.params = params
        self.queue: collections.deque[int] = collections.deque(range(len(params)) if indices is None else indices)
        self.remaining = len(self.queue)
        if len(set(self.queue)) != self.remaining:
            raise ValueError("indices: each index may be rendered only once per call")
        self.max_retries = max_retries
        self.max_startup_failures = max_startup_failures
        self.failures: collections.Counter[int] = collections.Counter()
        self.startup_failures = 0

    def failed(self, index: int, why: str) -> None:
        """Count a failed attempt at `index`; raise once it failed too often."""
        self.failures[index] += 1
        if self.failures[index] > self.max_retries:
            raise RenderError(f"sample {index} (id {self.params[index].id}) failed {self.failures[index]} times; last: {why}")

    def retry_first(self, indices: Iterable[int]) -> None:
        """Put samples back at the front of the queue, in their order."""
        self.queue.extendleft(reversed(list(indices)))

    def finished(self, msg: tuple, node: str | None = None) -> RenderResult | None:
        """A worker's message about one sample: ("done", index, image, mask, rss) is its result;
        ("error", index, why) is a Python error in the worker, which lives on: the failure is
        counted and the sample goes back to the front of the queue."""
        if msg[0] == "done":
            _, index, image, mask, _ = msg
            self.remaining -= 1
            return RenderResult(index, image, mask, self.params[index], node)
        _, index, why = msg
        self.failed(index, why)
        self.queue.appendleft(index)
        return None

    def started(self) -> None:
        self.startup_failures = 0

    def startup_failed(self, message: Callable[[], str]) -> None:
        self.startup_failures += 1
        if self.startup_failures > self.max_startup_failures:
            raise RenderError(message())
