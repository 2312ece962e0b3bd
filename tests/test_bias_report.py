import numpy as np
import pytest
from PIL import Image

from two4two.bias_report import (
    best_threshold_accuracy,
    conditional_mutual_information,
    describe,
    mutual_information,
    plot_joint_distributions,
)
from samplers import resolve_sampler


def test_threshold_accuracy_on_hand_made_data():
    assert best_threshold_accuracy([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert best_threshold_accuracy([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 1.0  # reversed rule
    assert best_threshold_accuracy([0.1, 0.2, 0.8, 0.9], [0, 1, 0, 1]) == 0.75
    # Ties cannot be split by a threshold.
    assert best_threshold_accuracy([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5


def test_mutual_information_matches_known_values():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100_000)
    assert mutual_information(rng.random(100_000), y) < 0.001
    # x determines y: MI = H(y) = ln 2.
    assert mutual_information(y + rng.random(100_000) * 0.5, y) == pytest.approx(np.log(2), abs=0.01)
    # Binary symmetric channel with flip 0.1: ln2 − H(0.1).
    noisy = y ^ (rng.random(100_000) < 0.1)
    h = -(0.1 * np.log(0.1) + 0.9 * np.log(0.9))
    assert mutual_information(noisy.astype(bool), y) == pytest.approx(np.log(2) - h, abs=0.01)


def test_conditional_mi_separates_redundant_from_extra_information():
    rng = np.random.default_rng(1)
    z = rng.random(100_000)
    y = (z > 0.5).astype(int)
    copy_of_z = z + rng.normal(0, 0.01, z.size)  # nothing beyond z
    assert mutual_information(copy_of_z, y) > 0.5
    assert conditional_mutual_information(copy_of_z, y, z) < 0.02
    # A label z does not settle: flipped with probability 0.2 whatever z is, so H(y | z) = H(0.2).
    # An attribute that knows the flips adds all of that beyond z; a copy of z adds nothing.
    flipped = y ^ (rng.random(z.size) < 0.2)
    knows_the_flips = flipped.astype(bool)
    h = -(0.2 * np.log(0.2) + 0.8 * np.log(0.8))
    assert conditional_mutual_information(knows_the_flips, flipped, z) == pytest.approx(h, abs=0.01)
    assert conditional_mutual_information(copy_of_z, flipped, z) < 0.02


def test_describe_finds_the_study_biases_and_only_them():
    batch = resolve_sampler("study2022")().sample(100_000, 3)
    rows = {r.attribute: r for r in describe(batch)}
    assert rows["arm_position"].threshold_accuracy > 0.95
    # Colour: predictive beyond the legs (in the band and conditionally).
    assert rows["obj_color"].threshold_accuracy_band > 0.85
    assert rows["obj_color"].mutual_information_given_legs > 0.03
    # Shape: biased overall but adds nothing beyond the legs.
    assert rows["spherical"].mutual_information > 0.1
    assert rows["spherical"].mutual_information_given_legs < 0.005
    for name in ("bg_color", "bending", "obj_rotation_yaw", "position_x"):
        assert rows[name].mutual_information < 0.005
        assert rows[name].threshold_accuracy < 0.52


@pytest.mark.slow  # draws the many-panel joint-distribution figure
def test_joint_plot_is_written(tmp_path):
    batch = resolve_sampler("study2022")().sample(2000, 0)
    path = plot_joint_distributions(batch, tmp_path / "joint.png")
    with Image.open(path) as img:
        assert img.size[0] > 800 and img.size[1] > 300
        # Not a blank canvas: both class colours were drawn.
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    yellowish = (pixels[:, 0] - pixels[:, 2] > 40).sum()
    bluish = (pixels[:, 2] - pixels[:, 0] > 40).sum()
    assert yellowish > 500 and bluish > 500
