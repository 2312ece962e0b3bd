"""Rendering: `render()` and `open_pool()` over two backends with one contract.

    contract.py     settings, results, errors, validation, worker payload, retry bookkeeping
    local_pool.py   persistent Blender worker processes on this machine (the default)
    ray_pool.py     the same workers as Ray actors, on one machine or a cluster

Nothing here imports bpy: the workers do (`blender_scripts/`).
"""

from __future__ import annotations

from typing import Iterator, Sequence

from two4two.errors import ParameterError
from two4two.parameters import SceneParameters
from two4two.render.contract import (
    RenderError,
    RenderResult,
    RenderSettings,
    validate_all,
    worker_payload,
)
from two4two.render.local_pool import RenderPool
from two4two.render.ray_pool import RayRenderPool, check_reachable, import_ray  # Ray itself is imported when used

__all__ = [
    "BACKENDS", "RenderError", "RenderPool", "RenderResult", "RenderSettings", "check_backend", "open_pool", "render",
    "validate_all", "worker_payload",
]

BACKENDS = ("local", "ray")


def open_pool(backend: str = "local", workers: int | None = None, settings: RenderSettings | None = None, address: str | None = None, **options):
    """A render pool of the chosen backend: the local process pool (default) or Ray actors.

    The backend changes where images are rendered, never their bytes, so it is not part
    of a dataset's identity and a render started on one backend can be resumed on the other.
    """
    if backend != "ray":
        check_backend(backend, address)  # unknown backend, or an address for the local pool
        return RenderPool(workers, settings, **options)
    return RayRenderPool(workers, settings, address=address, **options)


def check_backend(backend: str, address: str | None = None) -> None:
    """User errors about the backend, raised before a render job writes anything."""
    if backend not in BACKENDS:
        raise ParameterError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if address is not None and backend != "ray":
        raise ParameterError(f"address: only used with backend 'ray', got backend {backend!r}")
    if backend == "ray":  # fail before any output is written: Ray missing, cluster not there
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
