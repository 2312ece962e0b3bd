"""Mask-aware denoising: the background from the background, the animal from the animal, the
edge from the edge.

Few samples leave grain; Blender's denoiser (OpenImageDenoise) removes it but mixes colours
across the silhouette, so a changed background colour would change animal pixels. Here every
pixel is classed by Cycles' Cryptomatte coverage (the share of its samples on each object):
*background* (all samples on the plane), *animal* (all samples on blocks) or *edge* (both), and
each class is estimated from its own class only:

* Background: a Gaussian-weighted least-squares plane per pixel over the background pixels
  (σ 2.5 px). The plane is lit smoothly, so a plane keeps its soft gradients and shadows.
* Animal: a joint bilateral mean over the animal pixels within 5 px whose surface normal
  (Cycles' Normal pass, nearly noise-free) is close to the pixel's. On these diffuse blocks the
  shading is a function of the normal, and it falls steeply at a block's rounded rim. A plane
  fit in x, y (this module's earlier animal estimator) extrapolates that fall-off past the rim
  and painted near-black fringes on the shaded side (up to 198/255); averaging only pixels of
  similar normal follows the rim without extrapolating.
* Edge: the mean of the *rendered* values of edge pixels within 6 px that have a similar normal
  and a similar share of animal. An edge pixel's colour depends on both objects, as the
  rendered one does; averaging like with like along the silhouette removes its noise while the
  antialiasing stays as rendered.

So a background pixel never reads an animal pixel and the reverse: changing one object's colour
leaves every pixel of the other exactly as it was (attribute isolation, by construction). Pixels
whose coverage Cryptomatte cannot account for (three objects, or a pixel no estimate reaches)
keep their rendered value. No bpy here: it works on the linear RGB, coverage and normals of a
render. Measured against the original renderer in benchmarks/fidelity.py.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKGROUND_SIGMA = 2.5  # px; the background is smooth apart from very soft shadows
ANIMAL_RADIUS, ANIMAL_SIGMA = 5, 2.0  # px: the animal's window and its spatial Gaussian
EDGE_RADIUS, EDGE_SIGMA = 6, 3.0  # px: the edge's window (edge pixels are few; reach along the silhouette)
NORMAL_SIGMA = 0.15  # Gaussian width on the difference of unit normals
SHARE_SIGMA = 0.15  # Gaussian width on the difference of animal shares (edge pixels)
PURE = 0.999  # share of a pixel's samples on one class for the pixel to belong to it
_KNOWN = 0.99  # Cryptomatte's two objects must account for this share of a pixel
_TRUNCATE = 3.0
_RIDGE = 1e-3
_MIN_SUPPORT = 0.05  # share of the Gaussian's weight on source pixels needed to trust a fit


def classify(coverage: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cryptomatte coverage -> (background, animal, edge masks (H, W), animal share (H, W)).

    `coverage`: (labels (H, W, K), -1 for none; shares (H, W, K)) of the objects covering
    each pixel, largest first; label 0 is the background, 1–8 the blocks.
    """
    ids, shares = coverage
    animal_share = np.where(ids > 0, shares, 0.0).sum(-1)
    background_share = np.where(ids == 0, shares, 0.0).sum(-1)
    known = (animal_share + background_share) >= _KNOWN
    background = known & (background_share >= PURE)
    animal = known & (animal_share >= PURE)
    edge = known & ~background & ~animal & (animal_share > 0) & (background_share > 0)
    return background, animal, edge, animal_share


def denoise(rgb: np.ndarray, labels: np.ndarray, coverage: tuple[np.ndarray, np.ndarray], normal: np.ndarray) -> np.ndarray:
    """Linear RGB (H, W, 3), labels (H, W), Cryptomatte coverage and normals (H, W, 3) -> denoised RGB.

    See the module docstring. Pixels whose 3 × 3 neighbourhood carries one class in the mask
    (the first sample's object) are estimated from that class even when a few of their samples
    fell on the other one, so mask interiors are isolated too.
    """
    values = np.asarray(rgb, dtype=np.float32)
    out = values.copy()
    background, animal, edge, animal_share = classify(coverage)
    background_inside = _interiors(labels == 0)
    animal_inside = _interiors(labels > 0)

    targets = background | background_inside
    if background.any():
        fitted, support = _local_plane(values, background, BACKGROUND_SIGMA)
        replace = targets & (support >= _MIN_SUPPORT)
        out[replace] = fitted[replace]

    unit = normal.astype(np.float32) / NORMAL_SIGMA
    targets = (animal | animal_inside) & ~(background | background_inside)
    _guided_mean(out, values, animal, targets, unit, ANIMAL_RADIUS, ANIMAL_SIGMA)

    guide = np.concatenate([unit, (animal_share / SHARE_SIGMA)[..., None].astype(np.float32)], axis=-1)
    _guided_mean(out, values, edge, edge & ~(animal_inside | background_inside), guide, EDGE_RADIUS, EDGE_SIGMA)
    return out.astype(rgb.dtype, copy=False)


def _interiors(region: np.ndarray) -> np.ndarray:
    return ndimage.binary_erosion(region, structure=np.ones((3, 3), bool), border_value=1)


def _guided_mean(out, values, sources, targets, guide, radius, sigma) -> None:
    """out[p] = Σ_q w(p, q)·values[q] / Σ_q w(p, q) over source pixels q within `radius` of each
    target p, w = exp(−|q − p|²/2σ²)·exp(−|guide[q] − guide[p]|²/2) (the guide is pre-scaled).

    Works on the target pixels only (a few thousand), gathering their neighbours at once.
    A target keeps its value when its sources carry under _MIN_SUPPORT of the spatial weight.
    """
    ty, tx = np.nonzero(targets)
    if ty.size == 0 or not sources.any():
        return
    r, channels = radius, guide.shape[-1]
    width = sources.shape[1] + 2 * r  # everything padded by the radius: every neighbour index is valid
    padded_sources = np.pad(sources, r).ravel()
    padded = np.pad(np.concatenate([guide, values], axis=-1), ((r, r), (r, r), (0, 0)))
    padded = padded.reshape(-1, padded.shape[-1])
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    keep = dy * dy + dx * dx <= r * r  # the offsets within the radius, and their spatial weights
    dy, dx = dy[keep], dx[keep]
    spatial = np.exp(-(dy * dy + dx * dx) / (2.0 * sigma * sigma)).astype(np.float32)
    centre = (ty + r) * width + (tx + r)
    neighbours = centre[:, None] + (dy * width + dx)[None, :]
    base = spatial[None, :] * padded_sources[neighbours]
    gathered = padded[neighbours]  # targets × offsets × (guide, values): one gather for both
    own = padded[centre]
    distance = np.zeros(base.shape, np.float32)
    for c in range(channels):
        d = gathered[..., c] - own[:, None, c]
        distance += d * d
    weight = base * np.exp(-0.5 * distance)
    total = weight.sum(axis=1)
    trusted = (base.sum(axis=1) >= _MIN_SUPPORT * spatial.sum()) & (total > 1e-12)
    estimate = np.empty((ty.size, values.shape[-1]), np.float32)
    for c in range(values.shape[-1]):
        estimate[:, c] = (weight * gathered[..., channels + c]).sum(axis=1)
    estimate /= np.maximum(total, 1e-12)[:, None]
    out[ty[trusted], tx[trusted]] = estimate[trusted]


def _local_plane(rgb: np.ndarray, sources: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-weighted least-squares plane per pixel and channel over the source pixels,
    evaluated at the pixel -> (fitted (H, W, 3), share of the Gaussian's weight on sources)."""
    weight = sources.astype(np.float32)
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
    sxx = wxx - 2 * xx * wx + xx * xx * s0 + _RIDGE * s0
    syy = wyy - 2 * yy * wy + yy * yy * s0 + _RIDGE * s0
    sxy = wxy - xx * wy - yy * wx + xx * yy * s0
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
    return out, s0
