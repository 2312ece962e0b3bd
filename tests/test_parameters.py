import json
import math

import pytest
from extras import imported

imported("dev", "hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from two4two.errors import ParameterError  # noqa: E402
from two4two.parameters import (  # noqa: E402
    BOOLEAN_ATTRIBUTES,
    CONTINUOUS_RANGES,
    FIELD_NAMES,
    SceneParameters,
    read_jsonl,
    write_jsonl,
)


def test_defaults_are_valid_and_round_trip_through_json():
    p = SceneParameters(id="a", obj_name="stretchy", arm_position=0.7, fliplr=True)
    q = SceneParameters.from_dict(json.loads(p.to_json()))
    assert q == p
    assert q.resolution == (128, 128) and isinstance(q.resolution, tuple)
    assert q.label == 1 and q.true_label == 1


def test_labeling_error_flips_the_stored_label_only():
    p = SceneParameters(id="a", obj_name="peaky", labeling_error=True)
    assert p.true_label == 0 and p.label == 1


def test_jsonl_round_trip_and_atomic_write(tmp_path):
    params = [SceneParameters(id=str(i), obj_color=i / 10) for i in range(5)]
    path = tmp_path / "sub" / "p.jsonl"
    assert write_jsonl(path, params) == 5
    assert read_jsonl(path) == params
    assert [f.name for f in path.parent.iterdir()] == ["p.jsonl"]  # no temp file left


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [SceneParameters(id="old")])

    def broken():
        yield SceneParameters(id="new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_jsonl(path, broken())
    assert [p.id for p in read_jsonl(path)] == ["old"]
    assert len(list(tmp_path.iterdir())) == 1


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    good = SceneParameters(id="a").to_dict()
    bad = dict(good, id="b", obj_color=1.5)
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ParameterError, match=r"p\.jsonl:2: obj_color: 1\.5 is outside"):
        read_jsonl(path)
    path.write_text("{not json\n")
    with pytest.raises(ParameterError, match=r"p\.jsonl:1: not valid JSON"):
        read_jsonl(path)


def test_from_dict_rejects_unknown_keys_and_missing_id():
    with pytest.raises(ParameterError, match="'colour' is not a scene parameter"):
        SceneParameters.from_dict({"id": "a", "colour": 0.3})
    with pytest.raises(ParameterError, match="id: missing"):
        SceneParameters.from_dict({"obj_color": 0.3})


@pytest.mark.parametrize("name", list(CONTINUOUS_RANGES))
def test_out_of_range_is_rejected_with_name_value_and_range(name):
    low, high = CONTINUOUS_RANGES[name]
    for value in (low - 1e-6, high + 1e-6, math.inf, -math.inf):
        with pytest.raises(ParameterError) as err:
            SceneParameters(id="a", **{name: value})
        assert name in str(err.value) and repr(value) in str(err.value) and "range" in str(err.value)
    # The ends themselves are allowed.
    SceneParameters(id="a", **{name: low})
    SceneParameters(id="a", **{name: high})


@pytest.mark.parametrize("name", list(CONTINUOUS_RANGES))
def test_nan_and_wrong_types_are_rejected_for_numbers(name):
    with pytest.raises(ParameterError, match=f"{name}: NaN"):
        SceneParameters(id="a", **{name: math.nan})
    for value in ("0.5", True, None, [0.5]):
        with pytest.raises(ParameterError, match=name):
            SceneParameters(id="a", **{name: value})


@pytest.mark.parametrize("name", BOOLEAN_ATTRIBUTES)
def test_booleans_are_not_coerced(name):
    for value in (0, 1, "true", None):
        with pytest.raises(ParameterError, match=f"{name}: expected true or false"):
            SceneParameters(id="a", **{name: value})


@pytest.mark.parametrize(
    "name,value",
    [
        ("obj_name", "dog"),
        ("resolution", (128,)),
        ("resolution", (0, 64)),
        ("resolution", (64.0, 64)),
        ("colormap", "no_such_map"),
        ("colormap_upper_scale", 0),
        ("id", ""),
        ("original_id", 5),
        ("changed_attributes", ("colour",)),
        ("hidden_blocks", ("tail",)),
        ("hidden_blocks", ("spine_left", "spine_left")),
        ("hidden_blocks", "spine_left"),
    ],
)
def test_other_fields_are_validated(name, value):
    with pytest.raises(ParameterError, match=name):
        SceneParameters(id="a", **{name: value}) if name != "id" else SceneParameters(id=value)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(list(CONTINUOUS_RANGES)),
    value=st.floats(allow_nan=True, allow_infinity=True),
)
def test_any_float_is_either_valid_or_named_in_the_error(name, value):
    low, high = CONTINUOUS_RANGES[name]
    if low <= value <= high:
        assert getattr(SceneParameters(id="a", **{name: value}), name) == value
    else:
        with pytest.raises(ParameterError, match=name):
            SceneParameters(id="a", **{name: value})


@settings(max_examples=100, deadline=None)
@given(key=st.text(min_size=1, max_size=20).filter(lambda k: k not in FIELD_NAMES))
def test_any_unknown_key_is_rejected(key):
    with pytest.raises(ParameterError, match="is not a scene parameter"):
        SceneParameters.from_dict({"id": "a", key: 0.5})


def test_colour_scalars_map_through_the_colormap_with_the_upper_rescale():
    blue = SceneParameters(id="a", obj_color=0.0).obj_color_rgb()
    red = SceneParameters(id="a", obj_color=1.0).obj_color_rgb()
    assert blue[2] > blue[0] and red[0] > red[2]
    # 0.5 + 0.9·(1 − 0.5) = 0.95: the study's rescale keeps the red end off saturation.
    study = SceneParameters(id="a", obj_color=1.0, colormap_upper_scale=0.9).obj_color_rgb()
    plain = SceneParameters(id="a", obj_color=0.95).obj_color_rgb()
    assert study == plain != red
    # Values at or below 0.5 are unchanged by the rescale.
    assert (
        SceneParameters(id="a", bg_color=0.3, colormap_upper_scale=0.9).bg_color_rgb()
        == SceneParameters(id="a", bg_color=0.3).bg_color_rgb()
    )
    # The background is never rescaled, as in the original's study sampler: red stays red.
    assert SceneParameters(id="a", bg_color=1.0, colormap_upper_scale=0.9).bg_color_rgb() == red


def test_hidden_blocks_round_trip_and_an_empty_list_keeps_the_old_line_format():
    from two4two.render import worker_payload

    p = SceneParameters(id="a", hidden_blocks=["arm_right_top", "arm_right_bottom"])
    assert p.hidden_blocks == ("arm_right_top", "arm_right_bottom")
    assert SceneParameters.from_dict(json.loads(p.to_json())) == p
    plain = SceneParameters(id="b")
    assert "hidden_blocks" not in plain.to_dict()  # lines of datasets written before part removal stay equal
    assert worker_payload(plain)["hidden_blocks"] == [] and worker_payload(p)["hidden_blocks"] == ["arm_right_top", "arm_right_bottom"]


def test_a_sampler_hides_blocks_for_a_whole_batch_and_interventions_keep_them():
    from two4two.errors import ConfigError
    from samplers import resolve_sampler

    sampler = resolve_sampler("study2022")().with_overrides({"hidden_blocks": ["spine_left"]})
    batch = sampler.sample(5, 0)
    assert all(p.hidden_blocks == ("spine_left",) for p in batch)
    assert all(p.hidden_blocks == ("spine_left",) for p in sampler.intervene(batch, "obj_color", rng=1))
    with pytest.raises(ConfigError, match="sampler_args.hidden_blocks: expected a list of distinct block names"):
        resolve_sampler("study2022")().with_overrides({"hidden_blocks": ["tail"]})
