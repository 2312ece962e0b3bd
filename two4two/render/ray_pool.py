"""The Ray render pool: the same Blender worker code in Ray actors, on one machine or a cluster.

A drop-in for `two4two.render.local_pool.RenderPool` (same `imap`, same results, same retry rules):
each actor builds one persistent scene (`blender_scripts.worker.open_scene`) and renders
small batches of samples (`render_one`); batch results stream back to the driver, which
writes them exactly as the local pool's. An actor or a node that dies loses nothing: the
batches it held go back to the queue and a replacement actor is requested. A sample is
only yielded once its batch's result reached the driver, so nothing is yielded twice.

Ray is optional (`pip install 'two4two[cluster]'`); this module imports it lazily.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from two4two.errors import ParameterError
from two4two.parameters import SceneParameters
from two4two.render.contract import Attempts, Pool, RenderError, RenderResult, RenderSettings, available_cpus, validate_all, worker_payload


def import_ray():
    try:
        import ray
    except ImportError:
        raise RenderError("backend 'ray' needs Ray: pip install 'two4two[cluster]'") from None
    return ray


def check_reachable(address: str) -> None:
    """Fail in seconds, not minutes (Ray retries for long), when nothing listens at HOST:PORT."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise RenderError(f"address: no Ray cluster answers at {address!r} ({exc.strerror or exc}); is its head node started?") from None


class RenderActor:
    """Runs inside a Ray worker process: one scene, built once, renders batches."""

    def __init__(self, settings: dict):
        from blender_scripts.worker import open_scene

        self.scene = open_scene(settings)

    def ready(self) -> tuple[int, str]:
        """(process id, Ray node id) once the scene is built."""
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()

    def render_batch(self, batch: list[tuple[int, dict]]) -> list[tuple]:
        from blender_scripts.worker import render_one

        return [render_one(self.scene, index, payload) for index, payload in batch]


@dataclass
class _Actor:
    handle: object
    ready_ref: object
    started: float
    ready: bool = False
    pid: int | None = None
    node: str | None = None
    busy_since: float = 0.0
    # (object ref, indices) of submitted batches, oldest first; the actor runs them in order.
    in_flight: collections.deque = field(default_factory=collections.deque)


class RayRenderPool(Pool):
    """Blender workers as Ray actors. Use as a context manager; `imap` streams results.

    `address`: None starts a local Ray instance (stopped again on close); "auto" or
    "HOST:PORT" joins a running cluster. If Ray is already initialised in this process,
    that instance is used. `workers` defaults to the cluster's CPUs / `threads`.
    """

    def __init__(
        self,
        workers: int | None = None,
        settings: RenderSettings | None = None,
        threads: int | None = None,
        timeout: float = 120.0,
        startup_timeout: float = 300.0,
        max_retries: int = 2,
        prefetch: int = 2,
        address: str | None = None,
        batch_size: int = 4,
    ):
        if workers is not None and workers < 1:
            raise ParameterError(f"workers: expected at least 1, got {workers}")
        if threads is not None and threads < 1:
            raise ParameterError(f"threads: expected at least 1 with backend 'ray' (Cycles threads per actor), got {threads}")
        if batch_size < 1:
            raise ParameterError(f"batch_size: expected at least 1, got {batch_size}")
        self.ray = import_ray()
        super().__init__(settings, timeout, startup_timeout, max_retries, prefetch)
        self.requested_workers = workers
        self.threads = threads or 1  # one CPU per actor: the local pool's measured best layout
        self.address = address
        self.batch_size = batch_size
        self._actors: list[_Actor] = []
        self._owns_ray = False
        self._actor_class = None
        self.n_workers = 0

    # ---- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        for a in self._actors:
            self._kill(a)
        self._actors = []
        if self._owns_ray:
            self.ray.shutdown()
            self._owns_ray = False

    def _connect(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            options = dict(log_to_driver=False, logging_level=logging.WARNING)
            if self.address is None:
                cpus = max(available_cpus(), (self.requested_workers or 1) * self.threads)
                options.update(num_cpus=cpus, include_dashboard=False)
            else:
                check_reachable(self.address)
            try:
                ray.init(address=self.address, **options)
            except ConnectionError as exc:
                raise RenderError(f"address: cannot join a Ray cluster at {self.address!r}: {exc}") from None
            self._owns_ray = True
        cpus = int(ray.cluster_resources().get("CPU", 0))
        self.n_workers = self.requested_workers or max(1, cpus // self.threads)
        self._actor_class = ray.remote(RenderActor).options(num_cpus=self.threads, max_restarts=0)

    def start(self) -> None:
        """Join or start Ray and request the actors (imap does this itself when needed)."""
        if not self._actors:
            self._connect()
            self._actors = [self._start_actor() for _ in range(self.n_workers)]

    def wait_ready(self, timeout: float | None = None) -> int:
        """Block until every actor has built its scene (or `timeout` s); returns how many have."""
        self.start()
        refs = [a.ready_ref for a in self._actors]
        done, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        return len(done)

    def _start_actor(self) -> _Actor:
        handle = self._actor_class.remote({**self.settings.to_dict(), "threads": self.threads})
        return _Actor(handle, handle.ready.remote(), time.monotonic())

    def _kill(self, a: _Actor) -> None:
        with contextlib.suppress(Exception):  # already gone with its node
            self.ray.kill(a.handle, no_restart=True)

    def _replace(self, i: int) -> None:
        self._kill(self._actors[i])
        self._actors[i] = self._start_actor()
        self.restarts += 1

    def worker_pids(self) -> list[int]:
        """Process ids of the started actors (on their nodes)."""
        return [a.pid for a in self._actors if a.ready]

    def actor_nodes(self) -> dict[int, str]:
        """Ray node id of every started actor, by process id."""
        return {a.pid: a.node for a in self._actors if a.ready}

    # ---- rendering -------------------------------------------------------------

    def imap(self, params: Sequence[SceneParameters], indices: Iterable[int] | None = None) -> Iterator[RenderResult]:
        """Render `params` (or only `indices` of it); yield results as they finish, each with its node id."""
        ray = self.ray
        validate_all(params)
        self.start()
        attempts = Attempts(params, indices, self.max_retries)
        queue = attempts.queue
        alone: set[int] = set()  # samples of a batch whose actor died: retried one by one

        def next_batch() -> list[int]:
            if queue[0] in alone:
                return [queue.popleft()]
            batch = []
            while queue and len(batch) < self.batch_size and queue[0] not in alone:
                batch.append(queue.popleft())
            return batch

        def actor_lost(i: int, why: str) -> None:
            # The oldest batch was being rendered; later ones only waited. All go back to the front.
            a = self._actors[i]
            if a.in_flight:
                for index in a.in_flight[0][1]:
                    attempts.failed(index, why)
                    alone.add(index)
                attempts.retry_first(index for _, batch in a.in_flight for index in batch)
                a.in_flight.clear()
            self._replace(i)

        while attempts.remaining:
            now = time.monotonic()
            for a in self._actors:
                while a.ready and queue and len(a.in_flight) < self.prefetch:
                    batch = next_batch()
                    ref = a.handle.render_batch.remote([(index, worker_payload(params[index])) for index in batch])
                    if not a.in_flight:
                        a.busy_since = now
                    a.in_flight.append((ref, batch))

            owner = {}
            for a in self._actors:
                if not a.ready:
                    owner[a.ready_ref] = a
                for ref, _ in a.in_flight:
                    owner[ref] = a
            done, _ = ray.wait(list(owner), num_returns=1, timeout=1.0)
            now = time.monotonic()
            for ref in done:
                a = owner[ref]
                if a not in self._actors:  # replaced while handling an earlier ref
                    continue
                i = self._actors.index(a)
                if ref is a.ready_ref and not a.ready:
                    try:
                        a.pid, a.node = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        last = str(exc).strip().splitlines()[-1]
                        attempts.startup_failed(lambda: (
                            "render actors keep failing on start-up; is two4two[render] (bpy) installed on "
                            f"every node? last error: {last}"))
                        self._replace(i)
                        continue
                    a.ready, a.busy_since = True, now
                    attempts.started()
                    continue
                try:
                    results = ray.get(ref, timeout=self.timeout)
                except (ray.exceptions.RayError, TimeoutError) as exc:
                    # The actor died (or its node, or the result went with the node): requeue.
                    actor_lost(i, f"actor {a.pid} on node {a.node} lost ({type(exc).__name__})")
                    continue
                # Batches finish in submission order; this one is the oldest.
                a.in_flight = collections.deque(entry for entry in a.in_flight if entry[0] is not ref)
                a.busy_since = now
                for msg in results:
                    result = attempts.finished(msg, a.node)  # after an error the actor lives on
                    if result is not None:
                        self.worker_rss_mb[f"{a.pid}@{a.node[:8]}"] = msg[4]
                        yield result

            for i, a in enumerate(self._actors):
                if a.ready and a.in_flight and now - a.busy_since > self.timeout * len(a.in_flight[0][1]):
                    actor_lost(i, f"actor {a.pid} on node {a.node} hung for more than {self.timeout:.0f} s per sample")
            if not any(a.ready for a in self._actors) and all(now - a.started > self.startup_timeout for a in self._actors):
                raise RenderError(
                    f"no render actor started within {self.startup_timeout:.0f} s; cluster resources: "
                    f"{ray.available_resources()} (each actor needs {self.threads} CPU)"
                )
