"""Study configs are validated before anything is computed."""

from pathlib import Path

import pytest

from two4two.errors import ConfigError
from two4two.study.export import CONDITIONS, parse_study_config
from two4two.study.pipeline import load_config as load_study_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GOOD = {"name": "s", "model": "m", "data": "d"}


def test_the_shipped_study_config_loads():
    config = load_study_config(CONFIGS / "study-cpu.yaml")
    assert config.conditions == CONDITIONS and config.rows == 10
    assert config.answer_key.reference == ("position_x", "position_y") and config.answer_key.margin == 0.05


@pytest.mark.parametrize("change, message", [
    ({"conditions": ["baseline", "videos"]}, "conditions: expected a list of distinct names from baseline, counterfactual, concepts, got \\[\"baseline\", \"videos\"\\]"),
    ({"conditions": ["baseline", "baseline"]}, "conditions: expected a list of distinct names"),
    ({"rows": 0}, "rows: expected an integer ≥ 1, got 0"),
    ({"rows": True}, "rows: expected an integer ≥ 1, got true"),
    ({"model": ""}, "model: expected a non-empty string, got ''"),
    ({"colour": 1}, "study.yaml: colour: unknown key; allowed: name, model"),
    ({"concepts": {"images": 100, "layers": 2}}, "concepts.layers: unknown key; allowed: images, components"),
    ({"concepts": {"components": 3}}, "concepts.components: expected an integer ≥ 5 \\(the concepts shown\\), got 3"),
    ({"answer_key": {"measure": "accuracy"}}, "answer_key.measure: 'accuracy' is not one of"),
])
def test_bad_study_configs_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_study_config({**GOOD, **change}, "study.yaml")


def test_a_missing_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such study config"):
        load_study_config(tmp_path / "nope.yaml")
