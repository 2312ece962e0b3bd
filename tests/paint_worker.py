"""A render worker without Blender: paints each sample from its parameters, so the real pool,
writer and manifest code paths run in fast tests. Same protocol as blender_scripts.worker."""

import os

import numpy as np


def paint(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Background grey level from bg_color, a centred square of obj_color whose size follows arm_position."""
    width, height = params["resolution"]
    image = np.full((height, width, 3), round(255 * params["bg_color"]), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    half = 1 + int(params["arm_position"] * (min(width, height) // 2 - 1))
    top, left = height // 2 - half, width // 2 - half
    image[top : top + 2 * half, left : left + 2 * half] = round(255 * params["obj_color"])
    mask[top : top + 2 * half, left : left + 2 * half] = 1
    return image, mask


def serve(conn, settings: dict) -> None:
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "stop":
            return
        _, index, params = msg
        image, mask = paint(params)
        conn.send(("done", index, image, mask, 0.0))


def painted_test_split(root, n: int, seed: int, interventions, removals, size: int = 32):
    """A study2022 test split of `n` painted images (with these interventions and part removals) under `root`."""
    import json

    from two4two.dataset import ensure
    from two4two.split import Split

    config = {"name": "painted", "sampler": "study2022", "seed": seed, "resolution": [size, size], "output_dir": "unused",
              "splits": {"test": {"n": n, "interventions": list(interventions)}}}
    (root / "config.yaml").write_text(json.dumps(config))
    data = ensure(root / "config.yaml", output_dir=root / "data", removals={"test": list(removals)}, workers=1,
                  worker_target=serve, progress=False)
    return Split(data, "test")
