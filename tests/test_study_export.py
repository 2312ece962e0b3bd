"""Study configs are validated before anything is computed."""

from pathlib import Path

import pytest

from two4two.errors import ConfigError
from two4two.study.export import CONDITIONS, load_study_config, parse_study_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GOOD = {"name": "s", "model": "m", "data": "d"}


def test_the_shipped_study_config_loads():
    config = load_study_config(CONFIGS / "study-cpu.yaml")
    assert config.conditions == CONDITIONS and config.rows == 10
    assert config.answer_key.reference == ("position_x", "position_y") and config.answer_key.margin == 0.05


@pytest.mark.parametrize("change, message", [
    ({"conditions": ["baseline", "videos"]}, "conditions: \\['baseline', 'videos'\\] must be a list of distinct names from baseline, counterfactual, concepts"),
    ({"conditions": ["baseline", "baseline"]}, "must be a list of distinct names"),
    ({"rows": 0}, "rows: 0 must be an integer ≥ 1"),
    ({"rows": True}, "rows: True must be an integer"),
    ({"model": ""}, "model: '' must be a non-empty string"),
    ({"colour": 1}, "unknown key 'colour'"),
    ({"concepts": {"images": 100, "layers": 2}}, "concepts: .* allows integers images and components only"),
    ({"concepts": {"components": 3}}, "concepts.components: 3 must be at least 5"),
    ({"answer_key": {"measure": "accuracy"}}, "answer_key.measure: 'accuracy' is not one of"),
])
def test_bad_study_configs_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_study_config({**GOOD, **change}, "study.yaml")


def test_a_missing_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such study config"):
        load_study_config(tmp_path / "nope.yaml")
