"""The mask-aware denoiser on synthetic renders (no Blender needed)."""

import numpy as np

from blender_scripts.denoise import denoise_by_label


def two_objects(seed=0, other_value=0.8):
    """A 64 × 64 render: a noisy plane-shaded background (label 0) and a square (label 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    labels = np.zeros((64, 64), np.uint8)
    labels[20:44, 20:44] = 1
    clean = np.where(labels[..., None] == 0, 0.3 + 0.004 * xx[..., None] + 0.002 * yy[..., None], other_value)
    clean = np.broadcast_to(clean, (64, 64, 3)).astype(np.float32)
    noisy = clean + rng.normal(0, 0.05, clean.shape).astype(np.float32)
    ids = np.stack([labels.astype(np.int16), np.full(labels.shape, -1, np.int16)], -1)
    shares = np.stack([np.ones(labels.shape, np.float32), np.zeros(labels.shape, np.float32)], -1)
    return clean, noisy, labels, (ids, shares)


def test_noise_goes_and_a_shading_gradient_stays():
    clean, noisy, labels, coverage = two_objects()
    out = denoise_by_label(noisy, labels, coverage)
    background = labels == 0
    raw_error = np.abs(noisy - clean)[background].std()
    error = out - clean
    assert error[background].std() < raw_error / 3  # the plane fit averages the noise away ...
    assert abs(error[background].mean()) < 0.003  # ... without flattening the gradient


def test_an_object_never_sees_another_objects_pixels():
    clean, noisy, labels, coverage = two_objects(other_value=0.8)
    _, noisy_b, _, _ = two_objects(other_value=0.1)  # same noise, the square in another colour
    a = denoise_by_label(noisy, labels, coverage)
    b = denoise_by_label(noisy_b, labels, coverage)
    background = labels == 0
    np.testing.assert_array_equal(a[background], b[background])
    assert np.abs(a[~background] - b[~background]).min() > 0.5  # while the square did change


def test_a_shared_pixel_is_the_coverage_weighted_mix_of_its_objects():
    clean, _, labels, (ids, shares) = two_objects()
    ids, shares = ids.copy(), shares.copy()
    # Row 20 of the square's edge: each pixel 25 % background, 75 % square.
    ids[20, 20:44] = (1, 0)
    shares[20, 20:44] = (0.75, 0.25)
    # Noise-free input, so both fits are exact (a constant square, a planar background) and
    # what is checked is the mix itself, not how well the fits average noise.
    out = denoise_by_label(clean, labels, (ids, shares))
    background_there = 0.3 + 0.004 * np.arange(25, 40) + 0.002 * 20
    np.testing.assert_allclose(out[20, 25:40, 0], 0.75 * 0.8 + 0.25 * background_there, atol=2e-3)
    assert np.abs(out[20, 25:40, 0] - clean[20, 25:40, 0]).min() > 0.05  # not the rendered value
