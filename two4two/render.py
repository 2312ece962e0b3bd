"""The render pool: persistent Blender worker processes that stream images back.

Each worker imports bpy once and builds the scene once (`blender_scripts/worker.py`);
this module never imports bpy. Results come back as they finish, tagged with their
index. A worker that crashes or hangs past the timeout is replaced and its sample
retried; after `max_retries` failures of one sample the run stops with an error naming it.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import wait
from typing import Iterable, Iterator, Sequence

import numpy as np

from two4two.errors import ParameterError, Two4TwoError
from two4two.parameters import FIELD_NAMES, SceneParameters, check_value

LOOKS = ("pale", "saturated")


class RenderError(Two4TwoError, RuntimeError):
    """A sample could not be rendered even after retries, or workers cannot start."""


@dataclass(frozen=True)
class RenderSettings:
    """How each image is rendered. Part of a dataset's identity (stored in its manifest)."""

    # 8 samples and the mask-aware denoiser: background grain below the original's at 128
    # samples, every image ≥ 35 dB PSNR against 1024 samples (benchmarks/render.py). The
    # denoiser filters each object's pixels from its own pixels only: isolation holds.
    samples: int = 8
    denoise: bool = True
    # Catmull–Clark render level of the blocks. The original uses 5; 3 gives silhouette IoU
    # 0.9988 with the original's renders (5: 1.0000) at half the render time (benchmarks/fidelity.py).
    subdivision_levels: int = 3
    # "pale": the colormap's sRGB values as linear albedo under Filmic, as the original and
    # the paper's images; "saturated": sRGB→linear albedo under the Standard view.
    look: str = "pale"

    def __post_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or not 1 <= self.samples <= 65536:
            raise ParameterError(f"samples: expected an integer in [1, 65536], got {self.samples!r}")
        if not isinstance(self.denoise, bool):
            raise ParameterError(f"denoise: expected true or false, got {self.denoise!r}")
        if isinstance(self.subdivision_levels, bool) or not isinstance(self.subdivision_levels, int) or not 0 <= self.subdivision_levels <= 6:
            raise ParameterError(f"subdivision_levels: expected an integer in [0, 6], got {self.subdivision_levels!r}")
        if self.look not in LOOKS:
            raise ParameterError(f"look: expected one of {', '.join(LOOKS)}, got {self.look!r}")

    def to_dict(self) -> dict:
        return asdict(self)


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


def worker_payload(params: SceneParameters) -> dict:
    """What a worker needs: the parameters plus their colours resolved to sRGB."""
    payload = params.to_dict()
    payload["obj_color_rgb"] = params.obj_color_rgb()
    payload["bg_color_rgb"] = params.bg_color_rgb()
    payload["stand_in_rgb"] = params.stand_in_rgb()
    return payload


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


class _Worker:
    def __init__(self, ctx, settings: RenderSettings, threads: int, target):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child, {**settings.to_dict(), "threads": threads}), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.busy_since = 0.0
        self.in_flight: collections.deque[int] = collections.deque()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()


class RenderPool:
    """N persistent Blender workers. Use as a context manager; `imap` streams results."""

    def __init__(
        self,
        workers: int | None = None,
        settings: RenderSettings | None = None,
        threads: int | None = None,
        timeout: float = 120.0,
        startup_timeout: float = 180.0,
        max_retries: int = 2,
        prefetch: int = 2,
        worker_target=None,
    ):
        self.n_workers = workers or default_workers()
        if self.n_workers < 1:
            raise ParameterError(f"workers: expected at least 1, got {workers}")
        self.settings = settings or RenderSettings()
        # Cycles threads per worker (default: cores / workers; 0: all cores). Not part of
        # the settings: it changes speed, not pixels.
        self.threads = default_threads(self.n_workers) if threads is None else threads
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.max_retries = max_retries
        self.prefetch = prefetch
        if worker_target is None:
            from blender_scripts.worker import serve as worker_target  # bpy is imported in the child only
        # The worker's main function; replaceable to inject faults in tests.
        self.worker_target = worker_target
        self._ctx = mp.get_context("spawn")
        # Workers start with the first imap, after its parameters were validated.
        self._workers: list[_Worker] = []
        self.restarts = 0
        self.worker_rss_mb: dict[int, float] = {}

    # ---- lifecycle -------------------------------------------------------------

    def __enter__(self) -> "RenderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for w in self._workers:
            try:
                if w.process.is_alive():
                    w.conn.send(("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for w in self._workers:
            w.process.join(timeout=max(0.1, deadline - time.monotonic()))
            w.kill()
        self._workers = []

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.pid is not None]

    def _replace(self, i: int) -> None:
        self._workers[i].kill()
        self._workers[i] = _Worker(self._ctx, self.settings, self.threads, self.worker_target)
        self.restarts += 1

    # ---- rendering -------------------------------------------------------------

    def imap(self, params: Sequence[SceneParameters], indices: Iterable[int] | None = None) -> Iterator[RenderResult]:
        """Render `params` (or only `indices` of it); yield results as they finish."""
        validate_all(params)
        if not self._workers:
            self._workers = [_Worker(self._ctx, self.settings, self.threads, self.worker_target) for _ in range(self.n_workers)]
        queue = collections.deque(range(len(params)) if indices is None else indices)
        payloads: dict[int, dict] = {}
        failures: collections.Counter[int] = collections.Counter()
        startup_failures = 0
        remaining = len(queue)
        if len(set(queue)) != remaining:
            raise ValueError("indices: each index may be rendered only once per call")

        def count_failure(index: int, why: str) -> None:
            failures[index] += 1
            if failures[index] > self.max_retries:
                raise RenderError(f"sample {index} (id {params[index].id}) failed {failures[index]} times; last: {why}")

        def worker_lost(w: _Worker, why: str) -> None:
            # The head sample was being rendered when the worker died or hung; the others
            # only waited in its pipe. All go back to the front of the queue.
            if w.in_flight:
                count_failure(w.in_flight[0], why)
                queue.extendleft(reversed(w.in_flight))
                w.in_flight.clear()

        def startup_failed(w: _Worker) -> None:
            nonlocal startup_failures
            startup_failures += 1
            if startup_failures > 3:
                raise RenderError(
                    f"render workers keep failing on start-up (last exit code {w.process.exitcode}); "
                    "is bpy installed? pip install 'two4two[render]'"
                )

        def drain(i: int) -> Iterator[RenderResult]:
            """Handle every message a worker has sent; mark it dead if its pipe broke."""
            nonlocal remaining, startup_failures
            now = time.monotonic()
            w = self._workers[i]
            try:
                while w.conn.poll():
                    msg = w.conn.recv()
                    if msg[0] == "ready":
                        w.ready = True
                        startup_failures = 0
                    elif msg[0] == "done":
                        _, index, image, mask, rss = msg
                        w.in_flight.remove(index)
                        w.busy_since = now
                        self.worker_rss_mb[w.pid] = rss
                        payloads.pop(index, None)
                        remaining -= 1
                        yield RenderResult(index, image, mask, params[index])
                    elif msg[0] == "error":
                        # A Python error in the worker: it lives on and keeps its queue.
                        _, index, why = msg
                        w.in_flight.remove(index)
                        w.busy_since = now
                        count_failure(index, why)
                        queue.appendleft(index)
            except (EOFError, OSError):
                dead.add(i)

        dead: set[int] = set()
        while remaining:
            now = time.monotonic()
            for i, w in enumerate(self._workers):
                if w.ready:
                    while queue and len(w.in_flight) < self.prefetch:
                        index = queue.popleft()
                        if index not in payloads:
                            payloads[index] = worker_payload(params[index])
                        if not w.in_flight:
                            w.busy_since = now
                        try:
                            w.conn.send(("render", index, payloads[index]))
                        except OSError:
                            queue.appendleft(index)
                            break
                        w.in_flight.append(index)

            conns = {w.conn: i for i, w in enumerate(self._workers)}
            sentinels = {w.process.sentinel: i for i, w in enumerate(self._workers)}
            ready = wait([*conns, *sentinels], timeout=1.0)
            now = time.monotonic()
            dead.clear()

            for obj in ready:
                if obj in conns:
                    yield from drain(conns[obj])
                else:
                    dead.add(sentinels[obj])
                    # A worker can send its last result and then die: keep that result.
                    yield from drain(sentinels[obj])
            for i, w in enumerate(self._workers):
                if i in dead or not w.process.is_alive():
                    w.process.join(timeout=2)  # reap it, so its exit code is known
                    if not w.ready:
                        startup_failed(w)
                    worker_lost(w, f"worker {w.pid} died (exit code {w.process.exitcode})")
                    self._replace(i)
                elif w.ready and w.in_flight and now - w.busy_since > self.timeout:
                    worker_lost(w, f"worker {w.pid} hung for more than {self.timeout:.0f} s")
                    self._replace(i)
                elif not w.ready and now - w.started > self.startup_timeout:
                    startup_failed(w)
                    self._replace(i)


BACKENDS = ("local", "ray")


def open_pool(backend: str = "local", workers: int | None = None, settings: RenderSettings | None = None, address: str | None = None, **options):
    """A render pool of the chosen backend: the local process pool (default) or Ray actors.

    The backend changes where images are rendered, never their bytes, so it is not part
    of a dataset's identity and a render started on one backend can be resumed on the other.
    """
    if backend != "ray":
        check_backend(backend, address)  # unknown backend, or an address for the local pool
        return RenderPool(workers, settings, **options)
    from two4two.ray_pool import RayRenderPool

    return RayRenderPool(workers, settings, address=address, **options)


def check_backend(backend: str, address: str | None = None) -> None:
    """User errors about the backend, raised before a render job writes anything."""
    if backend not in BACKENDS:
        raise ParameterError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if address is not None and backend != "ray":
        raise ParameterError(f"address: only used with backend 'ray', got backend {backend!r}")
    if backend == "ray":  # fail before any output is written: Ray missing, cluster not there
        from two4two.ray_pool import check_reachable, import_ray

        import_ray()
        if address is not None:
            check_reachable(address)


def render(
    params: Sequence[SceneParameters],
    workers: int | None = None,
    settings: RenderSettings | None = None,
    progress: bool = True,
    backend: str = "local",
    **pool_options,
) -> Iterator[RenderResult]:
    """Render parameter sets with a fresh pool; yields (index, image, mask, params) as they finish."""
    from tqdm import tqdm

    with open_pool(backend, workers, settings, **pool_options) as pool, tqdm(
        total=len(params), unit="img", disable=not progress, smoothing=0.05
    ) as bar:
        for result in pool.imap(params):
            bar.update(1)
            yield result
