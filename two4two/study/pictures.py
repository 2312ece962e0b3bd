"""Files of a bundle being exported: pictures enlarged for the browser, the tutorial's two
examples, and the folder itself, built beside its destination so a failed export leaves nothing."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

SCALE = 4  # stored pictures are enlarged (nearest) so 64 px renders stay crisp in a browser


def save_enlarged(image: np.ndarray, path: Path, scale: int = SCALE) -> str:
    """A single uint8 picture, enlarged without smoothing; returns its bundle-relative path (folder/name)."""
    from PIL import Image

    Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST).save(path)
    return f"{path.parent.name}/{path.name}"


def tutorial_pictures(split, folder: Path) -> list[str]:
    """The split's clearest Peeky and Stretchy (legs pulled in furthest, stretched out furthest)."""
    params = split.params
    peeky = min(range(len(params)), key=lambda i: params[i].arm_position)
    stretchy = max(range(len(params)), key=lambda i: params[i].arm_position)
    return [save_enlarged(split.images[peeky], folder / "peeky.png"), save_enlarged(split.images[stretchy], folder / "stretchy.png")]


@contextmanager
def built_beside(out_dir: Path, folders: tuple[str, ...]) -> Iterator[Path]:
    """Yields `.NAME.partial` beside `out_dir` with `folders` made; moves it into place when the block
    ends (replacing an existing `out_dir`), removes it when the block fails."""
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for folder in folders:
        (partial / folder).mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)
