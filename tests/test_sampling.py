from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from scipy import stats

from two4two.errors import ConfigError, ParameterError
from two4two.parameters import SAMPLED_ATTRIBUTES, SceneParameters, read_jsonl, write_jsonl
from samplers import REGISTRY, resolve_sampler
from two4two.sampling import Sampler, SceneBatch, draw, redraw_where, uniform


def test_every_distribution_form_draws():
    rng = np.random.default_rng(0)
    names = np.array(["peaky", "stretchy"] * 500)
    assert (draw(0.25, rng, 4) == 0.25).all()
    assert draw(uniform(0.2, 0.3), rng, 1000).min() >= 0.2
    called = draw(lambda r, n: r.uniform(5, 6, n), rng, 10)
    assert called.shape == (10,) and (called >= 5).all()
    per_class = draw({"peaky": 0.0, "stretchy": uniform(0.9, 1.0)}, rng, 1000, names)
    assert (per_class[names == "peaky"] == 0).all() and (per_class[names == "stretchy"] >= 0.9).all()


def test_per_class_distribution_must_cover_every_class_present():
    with pytest.raises(ValueError, match="stretchy"):
        draw({"peaky": 0.1}, np.random.default_rng(0), 2, np.array(["peaky", "stretchy"]))


def test_redraw_where_only_keeps_accepted_values():
    rng = np.random.default_rng(1)
    values = draw(uniform(0, 1), rng, 10_000)
    out = redraw_where(values, lambda v, i: (i % 2 == 0) & (v > 0.1), uniform(0, 1), rng)
    assert (out[::2] <= 0.1).all()
    np.testing.assert_array_equal(out[1::2], values[1::2])  # untouched where nothing was rejected


def test_sample_is_vectorised_validated_and_reproducible(tmp_path):
    sampler = Sampler()
    a, b = sampler.sample(500, 3), sampler.sample(500, 3)
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    write_jsonl(tmp_path / "c.jsonl", sampler.sample(500, 4))
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()
    # Objects built from the batch without re-validation are still valid ones.
    back = read_jsonl(tmp_path / "a.jsonl")
    assert back == a.to_list()
    assert len({p.id for p in back}) == 500
    assert a[-1] == back[-1] and a[3] == back[3]


def test_a_sampler_producing_out_of_range_values_is_named():
    @dataclass
    class Broken(Sampler):
        obj_color: Any = field(default_factory=lambda: stats.norm(0.5, 1.0))

    with pytest.raises(ParameterError, match=r"obj_color: sampler produced .* outside the allowed range \[0, 1\]"):
        Broken().sample(1000, 0)


def test_dependencies_are_methods_that_see_earlier_attributes():
    @dataclass
    class Mirror(Sampler):
        def draw_obj_color(self, rng, n, cols):
            return cols["arm_position"]

    batch = Mirror().sample(100, 0)
    np.testing.assert_array_equal(batch.columns["obj_color"], batch.columns["arm_position"])


def test_intervene_changes_exactly_one_attribute_and_records_provenance():
    sampler = resolve_sampler("study2022")()
    original = sampler.sample(1, 5)[0]
    for attribute in SAMPLED_ATTRIBUTES:
        if attribute in ("fliplr", "labeling_error"):  # constant False in this sampler: set it
            changed = sampler.intervene(original, attribute, value=True)
        else:
            # The class can redraw the same value; find a draw that differs.
            for seed in range(50):
                changed = sampler.intervene(original, attribute, rng=seed)
                if getattr(changed, attribute) != getattr(original, attribute):
                    break
        assert getattr(changed, attribute) != getattr(original, attribute)
        differing = [f for f in SAMPLED_ATTRIBUTES if getattr(changed, f) != getattr(original, f)]
        assert differing == [attribute]
        assert changed.original_id == original.id and changed.id != original.id
        assert changed.changed_attributes == (attribute,)
        # The copy is a fully valid parameter set (round-trips through validation).
        assert SceneParameters.from_dict(changed.to_dict()) == changed
    # An intervention on an intervention points at its direct source.
    twice = sampler.intervene(changed, "bg_color", value=0.3)
    assert twice.original_id == changed.id and twice.bg_color == 0.3


def test_intervene_with_a_value_checks_it():
    sampler = Sampler()
    p = sampler.sample(1, 0)[0]
    assert sampler.intervene(p, "obj_color", value=0.9).obj_color == 0.9
    with pytest.raises(ParameterError, match="obj_color: 1.5 is outside"):
        sampler.intervene(p, "obj_color", value=1.5)
    with pytest.raises(ParameterError, match="'colour' cannot be intervened on"):
        sampler.intervene(p, "colour")


def test_intervene_on_a_batch_keeps_order_and_every_other_column():
    sampler = resolve_sampler("study2022")()
    batch = sampler.sample(1000, 0)
    out = sampler.intervene(batch, "spherical", rng=1)
    assert isinstance(out, SceneBatch) and len(out) == 1000
    assert list(out.original_id) == list(batch.columns["id"])
    for name in SAMPLED_ATTRIBUTES:
        same = np.array_equal(out.columns[name], batch.columns[name])
        assert same == (name != "spherical"), name


def test_registry_names_and_module_paths_resolve():
    for short, cls in REGISTRY.items():
        path = f"{cls.__module__}:{cls.__qualname__}"
        assert resolve_sampler(short) is resolve_sampler(path)
        assert len(resolve_sampler(short)().sample(100, 0)) == 100
    with pytest.raises(ConfigError, match="neither a registered sampler"):
        resolve_sampler("studdy")
    with pytest.raises(ConfigError, match="cannot import module"):
        resolve_sampler("nope.nothing:Sampler")
    with pytest.raises(ConfigError, match="not a two4two Sampler"):
        resolve_sampler("two4two.sampling:SceneBatch")


def test_overrides_name_the_field_and_reject_unknown_ones():
    s = Sampler().with_overrides({"bg_color": {"uniform": [0.2, 0.3]}, "resolution": [32, 32]})
    batch = s.sample(500, 0)
    assert batch.columns["bg_color"].min() >= 0.2 and batch.columns["bg_color"].max() <= 0.3
    assert batch[0].resolution == (32, 32)
    with pytest.raises(ConfigError, match=r"sampler_args\.bg_colour: unknown sampler field"):
        Sampler().with_overrides({"bg_colour": 0.3})
    with pytest.raises(ConfigError, match=r"sampler_args\.resolution: expected a list"):
        Sampler().with_overrides({"resolution": [32.0, 32]})


def test_color_bias_and_high_variation_do_what_they_say():
    cb = resolve_sampler("color_bias")().sample(20_000, 0).columns
    red = cb["obj_color"]
    assert red[cb["obj_name"] == "stretchy"].mean() - red[cb["obj_name"] == "peaky"].mean() > 0.3
    hv = resolve_sampler("high_variation")().sample(20_000, 0).columns
    default = Sampler().sample(20_000, 0).columns
    for name in ("bending", "obj_rotation_pitch", "position_x"):
        assert hv[name].std() > 1.2 * default[name].std(), name
