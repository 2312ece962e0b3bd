"""Mask-aware denoising: each object's pixels are smoothed from that object's pixels only.

Few samples leave grain; Blender's denoiser (OpenImageDenoise) removes it but mixes colours
across the silhouette, so a changed background colour would change animal pixels. Here each
object (the background, each block) is filtered on its own. Its *pure* pixels — those all of
whose samples hit it, by Cycles' Cryptomatte coverage — are the sources of a Gaussian-weighted
least-squares plane fit (in x, y, per colour channel; a plane keeps the shading gradients a
blur would flatten), which replaces the pure pixels and the object's interior pixels (3×3
neighbourhood of one mask label). A pixel shared by two objects becomes the mix of their fits
weighted by their coverage, so the antialiasing stays as rendered while the shading noise
goes. A pure or interior pixel depends only on pure pixels of its own object: attribute
isolation holds by construction. No bpy here: it works on the linear RGB, labels and coverage
of a render.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKGROUND_SIGMA = 2.5  # px; the background is smooth apart from very soft shadows
BLOCK_SIGMA = 1.2  # px; blocks are ~14 px wide at 128 px and curved
_TRUNCATE = 3.0
_RIDGE = 1e-3


def _interiors(labels: np.ndarray, label: int) -> np.ndarray:
    return ndimage.binary_erosion(labels == label, structure=np.ones((3, 3), bool), border_value=1)


def _local_linear(rgb: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted least-squares plane per pixel and channel, evaluated at the pixel."""
    h, w = weight.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy -= h / 2
    xx -= w / 2

    def blur(a):
        return ndimage.gaussian_filter(a, sigma, mode="constant", truncate=_TRUNCATE)

    # Weighted moments about each output pixel p of d = q − p: sums of g(q − p)·m(q)·d^k.
    s0, wx, wy = blur(weight), blur(weight * xx), blur(weight * yy)
    wxx, wyy, wxy = blur(weight * xx * xx), blur(weight * yy * yy), blur(weight * xx * yy)
    sx, sy = wx - xx * s0, wy - yy * s0
    sxx = wxx - 2 * xx * wx + xx * xx * s0
    syy = wyy - 2 * yy * wy + yy * yy * s0
    sxy = wxy - xx * wy - yy * wx + xx * yy * s0
    sxx = sxx + _RIDGE * s0
    syy = syy + _RIDGE * s0
    # First row of the inverse of [[s0, sx, sy], [sx, sxx, sxy], [sy, sxy, syy]] (cofactors).
    c0 = sxx * syy - sxy * sxy
    c1 = sy * sxy - sx * syy
    c2 = sx * sxy - sy * sxx
    det = s0 * c0 + sx * c1 + sy * c2
    det = np.where(np.abs(det) > 1e-12, det, np.inf)
    out = np.empty(rgb.shape, dtype=np.float32)
    for c in range(rgb.shape[-1]):
        v = weight * rgb[..., c]
        b0, bx, by = blur(v), blur(v * xx), blur(v * yy)
        bx, by = bx - xx * b0, by - yy * b0
        out[..., c] = (c0 * b0 + c1 * bx + c2 * by) / det  # the plane's value at d = 0
    return out, s0  # s0: the share of the Gaussian's weight on source pixels


def denoise_by_label(rgb: np.ndarray, labels: np.ndarray, coverage: tuple[np.ndarray, np.ndarray] | None = None,
                     background_sigma: float = BACKGROUND_SIGMA, block_sigma: float = BLOCK_SIGMA) -> np.ndarray:
    """Linear RGB (H, W, 3) and labels (H, W) -> denoised linear RGB (see the module docstring).

    `coverage`: (labels (H, W, K), shares (H, W, K)) of the objects covering each pixel,
    largest first (Cycles' Cryptomatte pass). A pixel that all samples saw on one object is
    *pure*: the fit of an object uses its pure pixels and replaces them and the object's
    interior pixels; pixels mixing objects keep their rendered value. Without coverage, the
    interior pixels (3×3 neighbourhood of one label) stand in for the pure ones.
    """
    out = np.array(rgb, dtype=np.float32, copy=True)
    done = np.zeros(labels.shape, bool)
    fits = {}
    for label in np.unique(labels):
        inside = _interiors(labels, int(label))
        if coverage is not None:
            ids, shares = coverage
            pure = (ids[..., 0] == label) & (shares[..., 0] >= _PURE)
        else:
            pure = inside
        targets = pure | inside
        if not pure.any():
            continue
        sigma = background_sigma if label == 0 else block_sigma
        pad = int(np.ceil(_TRUNCATE * sigma)) + 1
        ys, xs = np.nonzero(targets)
        y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, labels.shape[0])
        x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, labels.shape[1])
        sources = pure[y0:y1, x0:x1]
        fitted, support = _local_linear(np.asarray(rgb[y0:y1, x0:x1], dtype=np.float32), sources.astype(np.float32), sigma)
        replace = targets[y0:y1, x0:x1] & (support >= _MIN_SUPPORT)
        region = out[y0:y1, x0:x1]
        region[replace] = fitted[replace]
        done[y0:y1, x0:x1] |= targets[y0:y1, x0:x1]
        fits[int(label)] = ((y0, x0), fitted, support >= _MIN_SUPPORT)
    if coverage is not None:
        _mix_fits(out, ~done, fits, *coverage)
    return out.astype(rgb.dtype, copy=False)


def _mix_fits(out, mixed, fits, ids, shares) -> None:
    """Pixels shared by objects: the coverage-weighted mix of the objects' fits at the pixel.

    The shares come from the samples themselves, so the antialiasing stays as rendered while
    each object's shading noise is replaced by its fit. A pixel keeps its rendered value when
    one of its objects has no trusted fit there.
    """
    ys, xs = np.nonzero(mixed)
    total = np.zeros(ys.shape, np.float32)
    value = np.zeros((ys.shape[0], 3), np.float32)
    trusted = np.ones(ys.shape, bool)
    for k in range(ids.shape[-1]):
        lab, share = ids[ys, xs, k], shares[ys, xs, k]
        for label in np.unique(lab[share > 0]):
            pick = np.nonzero((lab == label) & (share > 0))[0]
            if int(label) not in fits:
                trusted[pick] = False
                continue
            (y0, x0), fitted, ok = fits[int(label)]
            yy, xx = ys[pick] - y0, xs[pick] - x0
            inside = (yy >= 0) & (yy < fitted.shape[0]) & (xx >= 0) & (xx < fitted.shape[1])
            trusted[pick[~inside]] = False
            pick, yy, xx = pick[inside], yy[inside], xx[inside]
            trusted[pick[~ok[yy, xx]]] = False
            value[pick] += share[pick, None] * fitted[yy, xx]
            total[pick] += share[pick]
    use = trusted & (total > 0.99)
    out[ys[use], xs[use]] = value[use] / total[use, None]


_PURE = 0.999  # share of a pixel's samples on one object for the pixel to count as that object's alone
_MIN_SUPPORT = 0.05  # share of the Gaussian's weight on source pixels needed to trust a fit
