"""The local render pool: persistent Blender worker processes that stream images back.

Each worker imports bpy once and builds the scene once (`blender_scripts/worker.py`);
this module never imports bpy. Results come back as they finish, tagged with their
index. A worker that crashes or hangs past the timeout is replaced and its sample
retried; after `max_retries` failures of one sample the run stops with an error naming it.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing as mp
import time
from multiprocessing.connection import wait
from typing import Iterable, Iterator, Sequence

from two4two.errors import ParameterError
from two4two.parameters import SceneParameters
from two4two.render.contract import Attempts, Pool, RenderResult, RenderSettings, default_threads, default_workers, validate_all, worker_payload


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


class RenderPool(Pool):
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
        super().__init__(settings, timeout, startup_timeout, max_retries, prefetch)
        # Cycles threads per worker (default: cores / workers; 0: all cores). Not part of
        # the settings: it changes speed, not pixels.
        self.threads = default_threads(self.n_workers) if threads is None else threads
        if worker_target is None:
            from blender_scripts.worker import serve as worker_target  # bpy is imported in the child only
        # The worker's main function; replaceable to inject faults in tests.
        self.worker_target = worker_target
        self._ctx = mp.get_context("spawn")
        # Workers start with the first imap, after its parameters were validated.
        self._workers: list[_Worker] = []

    # ---- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(OSError):
                if w.process.is_alive():
                    w.conn.send(("stop",))
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
        attempts = Attempts(params, indices, self.max_retries)
        queue = attempts.queue
        payloads: dict[int, dict] = {}

        def worker_lost(w: _Worker, why: str) -> None:
            # The head sample was being rendered when the worker died or hung; the others
            # only waited in its pipe. All go back to the front of the queue.
            if w.in_flight:
                attempts.failed(w.in_flight[0], why)
                attempts.retry_first(w.in_flight)
                w.in_flight.clear()

        def startup_failed(w: _Worker) -> None:
            attempts.startup_failed(lambda: (
                f"render workers keep failing on start-up (last exit code {w.process.exitcode}); "
                "is bpy installed? pip install 'two4two[render]'"))

        def drain(i: int) -> Iterator[RenderResult]:
            """Handle every message a worker has sent; mark it dead if its pipe broke."""
            now = time.monotonic()
            w = self._workers[i]
            try:
                while w.conn.poll():
                    msg = w.conn.recv()
                    if msg[0] == "ready":
                        w.ready = True
                        attempts.started()
                    elif msg[0] in ("done", "error"):
                        w.in_flight.remove(msg[1])
                        w.busy_since = now
                        result = attempts.finished(msg)  # after an error the worker lives on and keeps its queue
                        if result is not None:
                            self.worker_rss_mb[w.pid] = msg[4]
                            payloads.pop(result.index, None)
                            yield result
            except (EOFError, OSError):
                dead.add(i)

        dead: set[int] = set()
        while attempts.remaining:
            now = time.monotonic()
            for w in self._workers:
                while w.ready and queue and len(w.in_flight) < self.prefetch:
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
