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
