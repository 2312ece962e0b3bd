"""The answer key follows what the model is measured to use, not what the data was biased on."""

import zlib

import numpy as np
import pytest
from extras import imported

from two4two.errors import ConfigError
from two4two.importance import Importance
from two4two.parameters import MEASURED_ATTRIBUTES
from two4two.split import Split
from two4two.study.answer_key import AnswerKeyRule, derive_answer_key
from two4two.study.questions import QUESTION_NAMES

imported("models", "statsmodels")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, parameter_dataset):
    """Parameters only (test doubles read them): study2022 with every attribute intervened."""
    root = tmp_path_factory.mktemp("key")
    parameter_dataset(root, MEASURED_ATTRIBUTES, n_test=400, n_train=500, seed=4)
    return root


class Double:
    """A parameter-reading 'model': a weighted sum of attributes, plus a deterministic
    per-image jitter that ignores every attribute (like a real network's nuisance noise)."""

    reads_parameters = True

    def __init__(self, **weights):
        self.weights = weights

    centres = {"arm_position": 0.5, "obj_color": 0.5, "spherical": 0.5, "position_x": -0.4}

    def __call__(self, params):
        jitter = np.array([zlib.crc32(p.id.encode()) / 2**32 - 0.5 for p in params])
        return np.array([sum(w * (getattr(p, a) - self.centres.get(a, 0.0)) for a, w in self.weights.items()) for p in params]) + 0.3 * jitter


def key_of(model, dataset, **rule):
    return derive_answer_key(Importance(model, n_resamples=300).evaluate(Split(dataset, "test")), AnswerKeyRule(**rule))


@pytest.mark.slow  # two models over ten intervention splits, 300 bootstrap resamples each
def test_an_attribute_the_model_uses_is_relevant_and_one_it_ignores_is_not(dataset):
    uses_colour = key_of(Double(arm_position=8.0, obj_color=4.0), dataset)
    assert uses_colour.answers == {"legs": "relevant", "colour": "relevant", "background": "irrelevant",
                                   "shape": "irrelevant", "rotation_bending": "irrelevant"}
    # The same data, a model that ignores colour but uses shape and pitch: the key follows the model.
    other = key_of(Double(arm_position=8.0, spherical=3.0, obj_rotation_pitch=4.0), dataset)
    assert other.answers["colour"] == "irrelevant"
    assert other.answers["shape"] == "relevant" and other.answers["rotation_bending"] == "relevant"
    assert set(other.answers) == set(QUESTION_NAMES)


@pytest.mark.slow
def test_the_threshold_is_the_references_upper_bound_plus_the_margin(dataset):
    result = Importance(Double(arm_position=8.0), n_resamples=300).evaluate(Split(dataset, "test"))
    key = derive_answer_key(result, AnswerKeyRule(margin=0.1))
    rows = {r.attribute: r.r_squared for r in result.rows}
    assert key.threshold == pytest.approx(max(rows["position_x"].high, rows["position_y"].high) + 0.1)
    assert [e["attribute"] for e in key.evidence["reference"]] == ["position_x", "position_y"]
    assert "legs" in key.format_table() and key.to_dict()["rule"]["reference"] == ["position_x", "position_y"]


@pytest.mark.slow
def test_a_model_that_uses_the_reference_raises_the_bar(dataset):
    # If the model relies on position x as much as on colour, colour no longer stands out.
    key = key_of(Double(arm_position=8.0, obj_color=4.0, position_x=5.0), dataset)
    assert key.answers["colour"] == "irrelevant"
    # Flip rate as the measure, with a margin in percentage points.
    assert key_of(Double(arm_position=8.0, obj_color=4.0), dataset, measure="flip_percent", margin=2.0).answers["colour"] == "relevant"


def test_bad_rules_are_named():
    with pytest.raises(ConfigError, match="answer_key.measure: 'accuracy' is not one of r_squared"):
        AnswerKeyRule(measure="accuracy")
    with pytest.raises(ConfigError, match="answer_key.reference: obj_color is asked about"):
        AnswerKeyRule(reference=("obj_color",))
    with pytest.raises(ConfigError, match="answer_key.threshold: unknown key; allowed: measure, reference, margin"):
        AnswerKeyRule.from_mapping({"threshold": 0.1})
    with pytest.raises(ConfigError, match="answer_key.margin: expected a non-negative number, got -1"):
        AnswerKeyRule.from_mapping({"margin": -1})


def test_each_question_asks_about_measured_attributes_none_twice_and_never_the_references():
    from two4two.study.questions import QUESTIONS, Question

    asked = [a for q in QUESTIONS for a in q.attributes]
    assert len(asked) == len(set(asked))
    assert set(asked) <= set(MEASURED_ATTRIBUTES)
    assert not set(asked) & set(AnswerKeyRule().reference)
    with pytest.raises(ValueError, match="'legs' is not a scene attribute"):
        Question("legs", ("legs",), "the legs", "Legs", "relevant")
