"""The 2022 study sampler against DESIGN.md and Table 5 / Figure 3 of Sixt et al. (2022).

200 000 draws with a fixed seed; tolerances are several standard errors wide.
"""

import numpy as np
import pytest
from scipy import stats

from two4two.bias_report import mutual_information
from two4two.parameters import SceneParameters
from samplers import resolve_sampler

N = 200_000


@pytest.fixture(scope="module")
def sampler():
    return resolve_sampler("study2022")()


@pytest.fixture(scope="module")
def cols(sampler):
    return sampler.sample(N, 20221).columns


def test_label_is_balanced_inside_the_ambiguous_band(cols):
    arm = cols["arm_position"]
    band = (arm >= 0.48) & (arm <= 0.52)
    # ≈ 16 000 samples in the band: standard error ≈ 0.004, tolerance 0.02 as specified.
    assert abs((cols["obj_name"][band] == "stretchy").mean() - 0.5) < 0.02


def test_colour_is_predictive_inside_the_band(cols):
    arm, color, stretchy = cols["arm_position"], cols["obj_color"], cols["obj_name"] == "stretchy"
    band = (arm >= 0.48) & (arm <= 0.52)
    assert color[band & stretchy].mean() - color[band & ~stretchy].mean() > 0.3


@pytest.mark.parametrize("region", ["low", "high"])
def test_colour_is_uniform_at_extreme_legs(cols, region):
    arm, color = cols["arm_position"], cols["obj_color"]
    sel = arm <= 0.2 if region == "low" else arm >= 0.8
    assert sel.sum() > 30_000
    assert stats.kstest(color[sel], "uniform").pvalue > 0.01


def test_shape_is_biased_towards_cubes_for_clear_peekies(cols):
    arm, shape = cols["arm_position"], cols["spherical"]
    low = arm < 0.45
    # 0.67 truncated to ≤ 0.5 + 0.33 · P(Beta(0.3, 0.3) ≤ 0.5) = 0.67 + 0.33·0.5
    assert abs((shape[low] <= 0.5).mean() - 0.835) < 0.01
    high = arm > 0.55
    assert abs((shape[high] >= 0.5).mean() - 0.835) < 0.01
    # Inside [0.45, 0.55] the base Beta(0.3, 0.3) itself.
    mid = (arm >= 0.45) & (arm <= 0.55)
    assert stats.kstest(shape[mid], stats.beta(0.3, 0.3).cdf).pvalue > 0.01


def test_shape_is_not_predictive_inside_the_narrow_band(cols):
    arm, shape, y = cols["arm_position"], cols["spherical"], cols["obj_name"]
    band = (arm >= 0.48) & (arm <= 0.52)
    assert mutual_information(shape[band], y[band]) < 0.005


@pytest.mark.parametrize(
    "name",
    ["bg_color", "obj_rotation_roll", "obj_rotation_pitch", "obj_rotation_yaw", "bending", "position_x", "position_y"],
)
def test_unbiased_attributes_are_independent_of_the_label(cols, name):
    assert mutual_information(cols[name], cols["obj_name"]) < 0.005


def test_biased_attributes_do_carry_label_information(cols):
    # The same estimator sees the planted biases, so the bound above is not vacuous.
    assert mutual_information(cols["obj_color"], cols["obj_name"]) > 0.03
    assert mutual_information(cols["spherical"], cols["obj_name"]) > 0.1


TABLE_5 = {
    "arm_position": (0.0, 1.0),
    "obj_color": (0.0, 1.0),
    "spherical": (0.0, 1.0),
    "position_y": (-0.8, 0.0),
    "position_x": (-0.8, 0.0),
    "bg_color": (0.05, 0.95),
    "obj_rotation_yaw": (0.0, 2 * np.pi),
    "obj_rotation_roll": (-np.pi / 4, np.pi / 4),
    "obj_rotation_pitch": (-np.pi / 6, np.pi / 6),
    "bending": (-np.pi / 10, np.pi / 10),
}


@pytest.mark.parametrize("name", list(TABLE_5))
def test_table_5_ranges_are_respected_and_filled(cols, name):
    low, high = TABLE_5[name]
    values = cols[name]
    assert values.min() >= low and values.max() <= high
    # The range is used, not just respected: the extremes reach near its ends
    # (truncated normals only as far as their spread allows).
    spread = (values.max() - values.min()) / (high - low)
    # Roll: σ = 0.03·π/4 is 1/33 of its bound, so 200 000 draws reach about ±4.5σ.
    assert spread > (0.1 if name == "obj_rotation_roll" else 0.9), spread


def test_legs_by_class_and_truncated_normal_spreads(cols):
    arm, stretchy = cols["arm_position"], cols["obj_name"] == "stretchy"
    assert arm[~stretchy].max() <= 0.52 and arm[stretchy].min() >= 0.48
    assert abs(stretchy.mean() - 0.5) < 0.005
    # TruncNormal(0, σ) on [-k, k] has a known standard deviation.
    for name, sigma, bound in (
        ("bending", np.pi / 20, np.pi / 10),
        ("obj_rotation_pitch", np.pi / 8, np.pi / 6),
        ("obj_rotation_roll", 0.03 * np.pi / 4, np.pi / 4),
    ):
        expected = stats.truncnorm(-bound / sigma, bound / sigma, scale=sigma).std()
        assert abs(cols[name].std() / expected - 1) < 0.01, name


def test_the_study_rescales_the_upper_half_of_the_colormap(sampler):
    p = sampler.sample(1, 0)[0]
    plain = SceneParameters(id="plain")  # the engine's colormap without the rescale
    # The reddest animal the study shows is the plain colormap's 0.95 = 0.5 + 0.9 · (1 − 0.5), not
    # its red end; colours at or below the middle and the background are mapped as without it.
    assert p.replace(obj_color=1.0).obj_color_rgb() == plain.replace(obj_color=0.95).obj_color_rgb()
    assert p.replace(obj_color=1.0).obj_color_rgb() != plain.replace(obj_color=1.0).obj_color_rgb()
    assert p.replace(obj_color=0.3).obj_color_rgb() == plain.replace(obj_color=0.3).obj_color_rgb()
    assert p.replace(bg_color=0.95).bg_color_rgb() == plain.replace(bg_color=0.95).bg_color_rgb()


def test_an_intervened_colour_is_independent_of_the_label(sampler, cols):
    batch = sampler.sample(N, 99)
    intervened = sampler.intervene(batch, "obj_color", rng=100).columns
    assert mutual_information(intervened["obj_color"], intervened["obj_name"]) < 0.005
    arm = intervened["arm_position"]
    band = (arm >= 0.48) & (arm <= 0.52)
    assert mutual_information(intervened["obj_color"][band], intervened["obj_name"][band]) < 0.005
    # ... while in the originals it was not.
    assert mutual_information(batch.columns["obj_color"][band], batch.columns["obj_name"][band]) > 0.3
