"""A render worker: build the scene once, then render what the pool sends.

The same code serves both backends: `serve` is the local pool's process loop, and a Ray
actor (two4two/render/ray_pool.py) calls `open_scene` once and `render_one` per sample.

Protocol on the pipe (pool → worker): ("render", index, params_dict) or ("stop",).
Worker → pool: ("ready", pid) once the scene is built; then per sample
("done", index, image, mask, rss_mb) or ("error", index, message).
"""

from __future__ import annotations

import os
import re
import sys
import traceback

# bpy adds its bundled scripts folders to sys.path on import; a worker spawned from a
# process that had imported bpy inherits them, and then `import bpy` would find the
# bundled scripts package instead of the module. Drop them before importing.
_BPY_SCRIPTS = re.compile(r"[/\\]bpy[/\\]\d+\.\d+[/\\]scripts")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_scene(settings: dict):
    """Silence Blender's C-level stdout and build the one scene of this process."""
    # Blender chatters on the C-level stdout (Cycles' CUDA probe, "Saved: ..."), which
    # would garble the parent's progress bar; results travel back as messages, errors on stderr.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)

    sys.path[:] = [p for p in sys.path if not _BPY_SCRIPTS.search(p)]
    from blender_scripts.scene import AnimalScene

    return AnimalScene(**settings)


def render_one(scene, index: int, params: dict) -> tuple:
    """("done", index, image, mask, rss_mb), or ("error", index, message) for a Python error."""
    try:
        image, mask = scene.render(params)
    except Exception as exc:  # report, keep serving: the pool decides about retries
        return ("error", index, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
    return ("done", index, image, mask, _rss_mb())


def serve(conn, settings: dict) -> None:
    scene = open_scene(settings)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the pool went away
            return
        if msg[0] == "stop":
            return
        _, index, params = msg
        conn.send(render_one(scene, index, params))
