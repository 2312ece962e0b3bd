from pathlib import Path

import numpy as np
import pytest

from two4two.config import load_config, parse_config
from two4two.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def minimal(**changes):
    raw = {"sampler": "study2022", "seed": 1, "splits": {"train": {"n": 10}}}
    raw.update(changes)
    return raw


def is_model_config(path):
    text = path.read_text()
    return "kind: classifier" in text or "kind: observer" in text


def is_dataset_config(path):
    return any(line.startswith("sampler:") for line in path.read_text().splitlines())


DATASET_CONFIGS = [p for p in sorted(CONFIGS.glob("*.yaml")) if is_dataset_config(p)]
MODEL_CONFIGS = [p for p in sorted(CONFIGS.glob("*.yaml")) if is_model_config(p)]


@pytest.mark.models  # the training config loader builds on the model code
@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.name)
def test_shipped_model_configs_load_and_point_at_shipped_dataset_configs(path):
    from two4two.models.training import load_train_config

    config = load_train_config(path)
    assert config.training.epochs > 0
    assert load_config(CONFIGS.parent / config.dataset_config).output_dir == config.data


def test_every_shipped_config_is_loaded_by_some_test():
    """Datasets and models by the parametrised tests below, study bundles and rules (study*.yaml) by
    tests/test_study_*, benchmarks (kind: benchmark) by tests/test_benchmark: a config of none of
    these kinds (a misspelt kind, say) would be tested by none."""
    unclassified = [p.name for p in CONFIGS.glob("*.yaml") if not (is_dataset_config(p) or is_model_config(p)
                    or p.name.startswith("study") or "kind: benchmark" in p.read_text())]
    assert not unclassified


@pytest.mark.parametrize("path", DATASET_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.splits and config.seed >= 0
    split = next(iter(config.splits))
    assert len(config.sample_split(split, n=20)) == 20


def test_study2022_config_has_the_papers_splits_and_interventions():
    config = load_config(CONFIGS / "study2022.yaml")
    assert {k: s.n for k, s in config.splits.items()} == {"train": 60000, "validation": 5000, "test": 5000}
    assert len(config.splits["test"].interventions) == 10
    assert config.make_sampler("train").sample(20000, 0).columns["labeling_error"].mean() == pytest.approx(0.1, abs=0.01)
    assert not config.make_sampler("test").sample(2000, 0).columns["labeling_error"].any()


def test_splits_have_their_own_reproducible_streams():
    config = parse_config(minimal(splits={"train": {"n": 50}, "test": {"n": 50}}))
    a, b = config.sample_split("train"), config.sample_split("train")
    assert list(a.columns["id"]) == list(b.columns["id"])
    assert not np.array_equal(a.columns["obj_color"], config.sample_split("test").columns["obj_color"])
    other_seed = config.sample_split("train", seed=2)
    assert not np.array_equal(a.columns["obj_color"], other_seed.columns["obj_color"])


def test_intervention_splits_point_back_and_are_seeded():
    config = parse_config(minimal(splits={"test": {"n": 30, "interventions": ["obj_color"]}}))
    originals = config.sample_split("test")
    once = config.sample_intervention("test", "obj_color", originals)
    again = config.sample_intervention("test", "obj_color", originals)
    assert list(once.original_id) == list(originals.columns["id"])
    np.testing.assert_array_equal(once.columns["obj_color"], again.columns["obj_color"])
    assert config.splits["test"].intervention_split_names() == ["test_intervened_obj_color"]


@pytest.mark.parametrize(
    "raw,message",
    [
        (minimal(seeed=1), r"seeed: unknown key"),
        (minimal(seed=-1), r"seed: expected a non-negative integer"),
        (minimal(seed="1"), r"seed: expected a non-negative integer"),
        (minimal(sampler="nope"), r"sampler: 'nope' is neither"),
        (minimal(resolution=[64]), r"resolution: expected \[width, height\]"),
        (minimal(splits={"train": {"n": -5}}), r"splits\.train\.n: expected a non-negative integer"),
        (minimal(splits={"train": {"n": 5, "size": 3}}), r"splits\.train\.size: unknown key"),
        (
            minimal(splits={"test": {"n": 5, "interventions": ["obj_color", "colour"]}}),
            r"splits\.test\.interventions\[1\]: expected an attribute: one of obj_name, arm_position, .*, got 'colour'",
        ),
        (minimal(sampler_args={"bg_color": 1.5}), r"sampler_args\.bg_color: bg_color: 1\.5 is outside"),
        (
            minimal(sampler_args={"bg_color": {"uniform": [0.5, 1.5]}}),
            r"sampler_args\.bg_color: this distribution can produce values in \[0\.5, 1\.5\]",
        ),
        (minimal(sampler_args={"bg_color": {"normal": [0.5, 0.1]}}), r"sampler_args\.bg_color: .*outside"),
        (minimal(sampler_args={"bg_color": {"uniform": [0.9, 0.1]}}), r"sampler_args\.bg_color\.uniform: low must be below high"),
        (minimal(sampler_args={"bg_color": {"uniform": [0.1]}}), r"sampler_args\.bg_color\.uniform: expected 2 numbers"),
        (minimal(sampler_args={"bg_color": {"unifrom": [0.1, 0.2]}}), r"sampler_args\.bg_color: expected one of"),
        (minimal(sampler_args={"bg_color": [0.1, 0.2]}), r"sampler_args\.bg_color: a list is not a distribution"),
        (minimal(sampler_args={"color_slope": "steep"}), r"sampler_args\.color_slope: expected a number"),
        (minimal(sampler_args={"obj_colour": 0.5}), r"sampler_args\.obj_colour: unknown sampler field"),
        (
            minimal(splits={"train": {"n": 5, "sampler_args": {"fliplr": 2}}}),
            r"splits\.train\.sampler_args\.fliplr: fliplr: expected true or false",
        ),
        (
            minimal(sampler_args={"spherical": {"peaky": {"beta": [0.3, 0.3]}, "stretchy": {"uniform": [0, 2]}}}),
            r"sampler_args\.spherical\.stretchy: this distribution",
        ),
        (minimal(splits={"train_intervened_x": {"n": 5}}), r"splits\.train_intervened_x: expected a split name: an identifier .*, got 'train_intervened_x'"),
        (minimal(render={"pixel_filter_width": 0}), r"render\.pixel_filter_width: expected a number of px in \[0\.01, 10\], got 0"),
        (minimal(render={"pixel_filter_width": True}), r"render\.pixel_filter_width: expected a number of px"),
        (minimal(render={"pixel_filter": 1.5}), r"render\.pixel_filter: unknown key; allowed: .*pixel_filter_width"),
    ],
)
def test_errors_name_the_key_path(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, "cfg.yaml")


def test_a_custom_draw_out_of_range_is_caught_on_load(tmp_path, monkeypatch):
    (tmp_path / "my_samplers.py").write_text(
        "from dataclasses import dataclass\n"
        "from two4two.sampling import Sampler\n"
        "@dataclass\n"
        "class Overshoot(Sampler):\n"
        "    gain: float = 1.0\n"
        "    def draw_obj_color(self, rng, n, cols):\n"
        "        return cols['arm_position'] * self.gain\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert parse_config(minimal(sampler="my_samplers:Overshoot"))
    with pytest.raises(ConfigError, match=r"cfg\.yaml: splits\.train: obj_color: sampler produced .* outside the allowed range"):
        parse_config(minimal(sampler="my_samplers:Overshoot", sampler_args={"gain": 3.0}), "cfg.yaml")


@pytest.mark.parametrize(
    "args,message",
    [
        ({"color_uniform_probability": 1.5}, r"sampler_args: color_uniform_probability: expected a value in \[0, 1\]"),
        ({"color_slope": -1}, r"sampler_args: color_slope: expected a non-negative slope"),
        ({"shape_band": [0.6, 0.4]}, r"sampler_args: shape_band: expected \[low, high\]"),
        ({"obj_color": {"uniform": [0, 0.1]}}, r"sampler_args\.obj_color: StudySampler computes obj_color"),
    ],
)
def test_study_sampler_fields_are_checked(args, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(minimal(sampler_args=args), "cfg.yaml")


def test_yaml_errors_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sampler: study2022\nseed: 1\nseed: 2\nsplits: {train: {n: 1}}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 3: key 'seed' appears twice"):
        load_config(path)
    path.write_text("sampler: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_sampler_by_module_path_and_split_overrides():
    config = parse_config(
        minimal(
            sampler="samplers.study2022:StudySampler",
            resolution=[32, 48],
            splits={"train": {"n": 100, "sampler_args": {"bg_color": {"uniform": [0.0, 0.1]}}}},
        )
    )
    batch = config.sample_split("train")
    assert batch.columns["bg_color"].max() <= 0.1
    assert batch[0].resolution == (32, 48)


def test_the_pixel_filter_width_reaches_the_render_settings():
    config = parse_config(minimal(render={"pixel_filter_width": 2.0}), "cfg.yaml")
    assert config.render_settings().pixel_filter_width == 2.0
    assert parse_config(minimal(), "cfg.yaml").render_settings().pixel_filter_width == 1.5  # the original's


@pytest.mark.parametrize("spec, message", [
    ({"uniform": [0.1, 0.2], "loc": 1}, r"sampler_args\.bg_color\.loc: unknown key; allowed: uniform alone"),
    ({"scipy": "uniform", "args": [], "shape": 1}, r"sampler_args\.bg_color\.shape: unknown key; allowed: scipy, args, loc, scale"),
])
def test_unknown_keys_in_a_distribution_are_named_in_the_one_format(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(minimal(sampler_args={"bg_color": spec}), "cfg.yaml")
