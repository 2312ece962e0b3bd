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
        (lambda m: m.update(format="qualtrics"), "format 'qualtrics' is not allowed; expected 'two4two-study-bundle'"),
        (lambda m: m.update(version=2), "version 2 is not allowed; expected one of 1"),
        (lambda m: m.update(version=True), "version true is not allowed"),
        (lambda m: m.pop("answer_key"), "manifest lacks answer_key"),
        (lambda m: m.update(colour="red"), "unknown field(s) 'colour'; allowed: format, version"),
        (lambda m: m.update(created="yesterday"), "created 'yesterday' is not allowed; expected an ISO 8601 time"),
        (lambda m: m["conditions"][1].update(name="saliency"),
         "conditions[1].name 'saliency' is not allowed; expected one of 'baseline', 'counterfactual', 'concepts'"),
        (lambda m: m["conditions"][1].update(name="baseline"), "conditions[1].name 'baseline' is not allowed; expected each condition once"),
        (lambda m: m.update(conditions=[]), "conditions [] is not allowed; expected a non-empty list"),
        (lambda m: m["conditions"][0]["comprehension"][0].update(answer="maybe"),
         "conditions[0].comprehension[0].answer 'maybe' is not allowed; expected one of 'image sizes', 'how sure the system is', 'colours'"),
        (lambda m: m["conditions"][0]["comprehension"][1].update(id="baseline_1"),
         "conditions[0].comprehension[1].id 'baseline_1' is not allowed; expected an id used once"),
        (lambda m: m["conditions"][0]["comprehension"][0].update(choices=["only one"]),
         "conditions[0].comprehension[0].choices [\"only one\"] is not allowed; expected at least 2 different texts"),
        (lambda m: m["questions"].pop(), "questions [\"legs\", \"colour\", \"background\", \"shape\"] is not allowed; expected 5 questions"),
        (lambda m: m["questions"][1].update(attribute="hue"), "questions[1].attribute 'hue' is not allowed; expected 'colour'"),
        (lambda m: m["questions"][2].update(choices=["yes", "no"]),
         "questions[2].choices [\"yes\", \"no\"] is not allowed; expected the answers relevant, irrelevant in any order"),
        (lambda m: m["questions"][0]["justification"].update(max_length=10**6),
         "questions[0].justification.max_length 1000000 is not allowed; expected an integer ≥ 1 and ≤ 10000"),
        (lambda m: m["questions"][0]["justification"].update(required="yes"),
         "questions[0].justification.required 'yes' is not allowed; expected true or false"),
        (lambda m: m["answer_key"].update(shape="maybe"), "answer_key.shape 'maybe' is not allowed; expected one of 'relevant', 'irrelevant'"),
        (lambda m: m["answer_key"].pop("legs"), "answer_key lacks legs"),
        (lambda m: m["consent"].update(text="  "), "consent.text '  ' is not allowed; expected non-empty text"),
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
    with pytest.raises(BundleError, match=r"introduction\.images\[0\] .* is not allowed; expected a relative path with '/' inside the bundle"):
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
