"""Study bundles: a valid bundle loads into the model the app uses; every malformed manifest is
refused with an error naming the field, the value and what is allowed; image paths cannot leave
the bundle."""

from __future__ import annotations

import json
import os

import pytest

from study_fixtures import ANSWER_KEY, make_bundle, manifest
from two4two.errors import BundleError
from two4two.study.bundle import ATTRIBUTES, CONDITIONS, load_bundle, parse_manifest, write_manifest


def test_valid_bundle_loads_into_the_model(tmp_path):
    bundle = load_bundle(make_bundle(tmp_path))
    assert bundle.condition_names == CONDITIONS
    assert [q.attribute for q in bundle.questions] == list(ATTRIBUTES)
    assert dict(bundle.answer_key) == ANSWER_KEY
    assert bundle.condition("baseline").comprehension[1].answer == "inward"
    assert bundle.consent.paragraphs == ["You take part voluntarily.", "Your answers are stored without your name."]
    assert bundle.image_paths == {
        "tutorial/peeky.png", "tutorial/stretchy.png", "tutorial/baseline_example.png", "tutorial/counterfactual_example.png",
        "tutorial/concepts_example.png", "stimuli/baseline.png", "stimuli/counterfactual.png", "stimuli/concepts.png",
    }
    assert bundle.questions[0].justification.max_length == 2000
    # The fingerprint follows the content, not the formatting.
    raw = manifest()
    assert parse_manifest(json.loads(json.dumps(raw, indent=7))).fingerprint == bundle.fingerprint
    raw["title"] = "Another study"
    assert parse_manifest(raw).fingerprint != bundle.fingerprint


def _broken(change):
    raw = manifest()
    change(raw)
    return raw


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda m: m.update(format="qualtrics"), "format: expected 'two4two-study-bundle', got 'qualtrics'"),
        (lambda m: m.update(version=2), "version: expected one of 1, got 2"),
        (lambda m: m.update(version=True), "version: expected one of 1, got true"),
        (lambda m: m.pop("answer_key"), "answer_key: missing; required: format, version"),
        (lambda m: m.update(colour="red"), "colour: unknown key; allowed: format, version"),
        (lambda m: m.update(created="yesterday"), "created: expected an ISO 8601 time such as 2026-11-22T15:00:00+00:00, got 'yesterday'"),
        (lambda m: m["conditions"][1].update(name="saliency"),
         "conditions[1].name: expected one of 'baseline', 'counterfactual', 'concepts', got 'saliency'"),
        (lambda m: m["conditions"][1].update(name="baseline"), "conditions[1].name: expected each condition once, got 'baseline'"),
        (lambda m: m.update(conditions=[]), "conditions: expected a non-empty list, got []"),
        (lambda m: m["conditions"][0]["comprehension"][0].update(answer="maybe"),
         "conditions[0].comprehension[0].answer: expected one of 'image sizes', 'how sure the system is', 'colours', got 'maybe'"),
        (lambda m: m["conditions"][0]["comprehension"][1].update(id="baseline_1"),
         "conditions[0].comprehension[1].id: expected an id used once in the condition, got 'baseline_1'"),
        (lambda m: m["conditions"][0]["comprehension"][0].update(choices=["only one"]),
         "conditions[0].comprehension[0].choices: expected at least 2 different texts, got [\"only one\"]"),
        (lambda m: m["questions"].pop(), "questions: expected 5 questions, on legs, colour, background, shape, rotation_bending in this order, got [\"legs\", \"colour\", \"background\", \"shape\"]"),
        (lambda m: m["questions"][1].update(attribute="hue"), "questions[1].attribute: expected 'colour' (the questions are on legs, colour, background, shape, rotation_bending in this order), got 'hue'"),
        (lambda m: m["questions"][2].update(choices=["yes", "no"]),
         "questions[2].choices: expected the answers relevant, irrelevant in any order, got [\"yes\", \"no\"]"),
        (lambda m: m["questions"][0]["justification"].update(max_length=10**6),
         "questions[0].justification.max_length: expected an integer in [1, 10000], got 1000000"),
        (lambda m: m["questions"][0]["justification"].update(required="yes"),
         "questions[0].justification.required: expected true or false, got 'yes'"),
        (lambda m: m["answer_key"].update(shape="maybe"), "answer_key.shape: expected one of 'relevant', 'irrelevant', got 'maybe'"),
        (lambda m: m["answer_key"].pop("legs"), "answer_key.legs: missing; required: legs"),
        (lambda m: m["consent"].update(text="  "), "consent.text: expected a non-empty string, got '  '"),
    ],
)
def test_malformed_manifest_names_field_value_and_allowed(tmp_path, change, expected):
    make_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(_broken(change)))
    with pytest.raises(BundleError) as err:
        load_bundle(tmp_path)
    assert expected in str(err.value)
    assert str(tmp_path / "manifest.json") in str(err.value)


@pytest.mark.parametrize(
    "path",
    ["../outside.png", "/etc/passwd.png", "tutorial/../../x.png", "tutorial\\peeky.png", "tutorial//peeky.png",
     "./tutorial/peeky.png", "tutorial/peeky.jpg", "", 7],
)
def test_image_paths_must_stay_inside_the_bundle(tmp_path, path):
    make_bundle(tmp_path)
    (tmp_path.parent / "outside.png").write_bytes(b"x")
    raw = _broken(lambda m: m["introduction"]["images"].__setitem__(0, path))
    with pytest.raises(BundleError, match=r"introduction\.images\[0\]: expected a relative path with '/' inside the bundle"):
        parse_manifest(raw, tmp_path)


def test_image_through_a_link_out_of_the_bundle_and_missing_images_are_refused(tmp_path):
    bundle_dir = make_bundle(tmp_path / "b")
    (tmp_path / "secret.png").write_bytes(b"not for participants")
    os.symlink(tmp_path / "secret.png", bundle_dir / "tutorial" / "link.png")
    raw = _broken(lambda m: m["introduction"]["images"].append("tutorial/link.png"))
    with pytest.raises(BundleError, match="leaves the bundle through a link"):
        parse_manifest(raw, bundle_dir)
    (bundle_dir / "stimuli" / "concepts.png").unlink()
    with pytest.raises(BundleError, match=r"conditions\[2\]\.stimulus\.image 'stimuli/concepts.png' names no file in"):
        load_bundle(bundle_dir)


def test_missing_or_unreadable_manifest(tmp_path):
    with pytest.raises(BundleError, match="no such bundle directory"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="no manifest.json in this directory"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": ')
    with pytest.raises(BundleError, match=r"not valid JSON \(line 1, column 12"):
        load_bundle(tmp_path)


def test_write_manifest_checks_before_writing(tmp_path):
    make_bundle(tmp_path)
    before = (tmp_path / "manifest.json").read_text()
    with pytest.raises(BundleError, match="answer_key.legs"):
        write_manifest(tmp_path, _broken(lambda m: m["answer_key"].update(legs="yes")))
    assert (tmp_path / "manifest.json").read_text() == before  # nothing half-written
    raw = _broken(lambda m: m.update(title="Renamed"))
    bundle = write_manifest(tmp_path, raw)
    assert bundle.title == "Renamed" and load_bundle(tmp_path).fingerprint == bundle.fingerprint
    assert not list(tmp_path.glob(".*.tmp"))
