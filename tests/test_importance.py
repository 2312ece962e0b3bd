"""Ground-truth importance: a parameter-reading test double through the real code path."""

import numpy as np
import pytest
from extras import imported

from two4two.dataset import DatasetError, read_split
from two4two.importance import Importance, summarise_pairs
from two4two.parameters import ATTRIBUTES, write_jsonl
from two4two.split import Split

imported("models", "statsmodels")

# The test split's interventions of the datasets here: parameters only, no images (the
# conftest's parameter_dataset: 2000 train and by default 400 test samples).
ATTRS = ["arm_position", "obj_color", "bg_color", "obj_rotation_yaw"]


class ColourOracle:
    """A 'model' whose logit is 4·(obj_color − 0.5): relies on colour only, linearly."""

    reads_parameters = True

    def __call__(self, params):
        return np.array([4.0 * (p.obj_color - 0.5) for p in params])


def test_a_linear_colour_model_has_r2_one_for_colour_and_zero_elsewhere(tmp_path, parameter_dataset):
    job = parameter_dataset(tmp_path, ATTRS)
    result = Importance(ColourOracle(), n_resamples=200).evaluate(Split(tmp_path, "test"))
    rows = {r.attribute: r for r in result.rows}
    # Every intervention split present is measured, in the paper's order.
    assert [r.attribute for r in result.rows] == ["arm_position", "obj_color", "bg_color", "obj_rotation_yaw"]
    assert rows["obj_color"].r_squared.value == pytest.approx(1.0, abs=1e-9)
    assert rows["obj_color"].slope.value == pytest.approx(4.0, abs=1e-9)
    assert rows["obj_color"].r_squared.low <= 1.0 <= rows["obj_color"].r_squared.high + 1e-9
    for name in ("arm_position", "bg_color", "obj_rotation_yaw"):
        # Nothing but colour moves the logit: every Δlogit is exactly zero.
        assert rows[name].flip_percent.value == 0 and rows[name].median_abs_delta_logit.value == 0
        assert np.isnan(rows[name].r_squared.value) or rows[name].r_squared.value < 1e-12

    # Flip % and median |Δlogit| by hand for colour.
    originals = {p.id: p for p in job.splits["test"]}
    changed = job.splits["test_intervened_obj_color"]
    before = np.array([4 * (originals[p.original_id].obj_color - 0.5) for p in changed])
    after = np.array([4 * (p.obj_color - 0.5) for p in changed])
    assert rows["obj_color"].flip_percent.value == pytest.approx(100 * np.mean((before > 0) != (after > 0)))
    assert rows["obj_color"].median_abs_delta_logit.value == pytest.approx(np.median(np.abs(after - before)))
    assert rows["obj_color"].mean_abs_delta_logit.value == pytest.approx(np.mean(np.abs(after - before)))
    # The data-bias column comes from the training split: colour is predictive beyond the legs.
    assert rows["obj_color"].data_mi_given_legs > rows["bg_color"].data_mi_given_legs + 0.02


def test_noisy_reliance_on_two_attributes_gives_partial_r2(tmp_path, parameter_dataset):
    parameter_dataset(tmp_path, ATTRS, n_test=600)

    class Mixed:
        reads_parameters = True

        def __call__(self, params):
            return np.array([5 * (p.arm_position - 0.5) + 2 * (p.obj_color - 0.5) for p in params])

    rows = {r.attribute: r for r in Importance(Mixed(), n_resamples=200).evaluate(Split(tmp_path, "test")).rows}
    assert rows["arm_position"].r_squared.value == pytest.approx(1.0)
    assert rows["arm_position"].flip_percent.value > rows["obj_color"].flip_percent.value
    assert rows["bg_color"].flip_percent.value == 0


def test_r2_of_unrelated_noise_is_near_zero_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    da = rng.uniform(-1, 1, 2000)
    logits = rng.normal(0, 2, 2000)
    row = summarise_pairs("bg_color", logits, logits + rng.normal(0, 1, 2000), da, n_resamples=300)
    assert row.r_squared.value < 0.01 and row.r_squared.low <= row.r_squared.value <= row.r_squared.high
    assert 0 < row.flip_percent.low < row.flip_percent.value < row.flip_percent.high


def test_yaw_difference_wraps_around_the_circle():
    new = np.array([0.1, 6.2, np.pi, 3.0])
    old = np.array([6.2, 0.1, 0.0, 3.0 + 2 * np.pi])
    np.testing.assert_allclose(ATTRIBUTES["obj_rotation_yaw"].delta(new, old), [0.1 + 2 * np.pi - 6.2, 6.2 - 0.1 - 2 * np.pi, np.pi, 0.0], atol=1e-12)
    np.testing.assert_allclose(ATTRIBUTES["obj_color"].delta(new, old), new - old)


def test_missing_interventions_and_mismatched_ids_are_clear_errors(tmp_path, parameter_dataset):
    job = parameter_dataset(tmp_path, ATTRS)
    with pytest.raises(DatasetError, match=r"no intervention split for spherical of 'test'.*--create-interventions"):
        Importance(ColourOracle(), ["spherical"]).evaluate(Split(tmp_path, "test"))
    with pytest.raises(DatasetError, match="no split 'validation'"):
        Importance(ColourOracle()).evaluate(Split(tmp_path, "validation"))
    # An intervention split whose samples point at originals that are not there.
    bad = read_split(tmp_path, "test_intervened_bg_color")
    bad[3] = bad[3].replace(original_id="0000000000000000")
    write_jsonl(tmp_path / "test_intervened_bg_color" / "parameters.jsonl", bad)
    with pytest.raises(DatasetError, match=r"points to original '0000000000000000', which is not in 'test'"):
        Importance(ColourOracle(), ["bg_color"]).evaluate(Split(tmp_path, "test"))
    # The plan itself was fine: every intervention split of 'test' was planned and points back to it.
    assert list(job.splits) == ["train", "test", *(f"test_intervened_{a}" for a in ATTRS)]
    assert job.split_info["test_intervened_bg_color"] == {"n": 400, "intervention_of": "test", "attribute": "bg_color"}
    assert {p.original_id for p in job.splits["test_intervened_bg_color"]} == {p.id for p in job.splits["test"]}
