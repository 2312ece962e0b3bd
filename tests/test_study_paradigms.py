"""Trial paradigms in the study runner (progressive reveal, accept or reject, guess the output) over
real HTTP: whole runs with the export read back, balanced draws, the steps' order, replays stored
once, tampered forms refused without a trace in the database, too-fast answers kept and flagged,
and bundles that break a paradigm's rules refused with the field named."""

from __future__ import annotations

import copy
import csv
import random
from collections import Counter
from types import SimpleNamespace

import pytest
from extras import imported

imported("study", "flask")  # the study app
imported("dev", "httpx")  # its test client

from study_fixtures import (  # noqa: E402
    db_dump,
    TRIAL_CONDITIONS,
    ManualClock,
    WebParticipant,
    make_trial_bundle,
    running_server,
    trial_manifest,
)
from two4two.cli import main  # noqa: E402
from two4two.errors import BundleError  # noqa: E402
from two4two.study.app import create_app  # noqa: E402
from two4two.study.bundle import load_bundle, parse_manifest  # noqa: E402
from two4two.study.paradigms import REVEAL_LEVELS  # noqa: E402

PARADIGMS = tuple(TRIAL_CONDITIONS)


def serve(tmp_path, paradigm):
    bundle_dir = make_trial_bundle(tmp_path / paradigm, paradigm)
    bundle = load_bundle(bundle_dir)
    clock = ManualClock()
    db = tmp_path / f"{paradigm}.sqlite"
    app = create_app(bundle, db, clock=clock, rng=random.Random(1))
    return bundle, bundle_dir, clock, db, app


@pytest.fixture(params=PARADIGMS)
def study(request, tmp_path):
    bundle, bundle_dir, clock, db, app = serve(tmp_path, request.param)
    with running_server(app) as url:
        yield SimpleNamespace(url=url, clock=clock, db=db, bundle=bundle, bundle_dir=bundle_dir, tmp=tmp_path, paradigm=request.param)


def export(study) -> list[dict]:
    out = study.tmp / f"{study.paradigm}.csv"
    assert main(["study", "responses", "--db", str(study.db), "--bundle", str(study.bundle_dir), "-o", str(out)]) == 0
    with open(out, newline="") as fh:
        return list(csv.DictReader(fh))


def to_first_trial(p: WebParticipant) -> dict:
    p.consent()
    while True:
        info = p.page()
        if info["kind"] == "trial":
            return info
        fields = {name: "one picture at a time" for name in info["radios"]}
        assert p.submit(info["seq"], **fields).status_code == 303


def test_whole_runs_store_one_row_per_step_with_balanced_conditions_and_trials(study):
    order = study.bundle.order
    people = 2 * len(study.bundle.conditions)
    seen = []
    for i in range(people):
        p = WebParticipant(study.url)
        shown: list[tuple[str, str]] = []

        def choose(info, shown=shown, i=i):
            shown.append((info["trial"], info["step"]))
            return info["choices"][i % len(info["choices"])]

        final = p.complete_trials(choose, on_page=lambda info: study.clock.advance(3.0))
        assert final["kind"] == "complete" and len(final["code"]) == 8
        seen.append(shown)
        p.close()

    rows = export(study)
    steps = {t.id: len(t.steps) for t in study.bundle.trials}
    assert len(rows) == sum(len(s) for s in seen) == sum(steps[t] for s in seen for t in dict.fromkeys(t for t, _ in s))
    by_person = {}
    for r in rows:
        by_person.setdefault(r["participant_id"], []).append(r)
    assert len(by_person) == people
    # every participant answered exactly the steps the pages showed, in that order, with the stated answer
    assert sorted([(r["trial"], r["step"]) for r in rs] for rs in by_person.values()) == sorted(seen)
    for rs in by_person.values():
        trials = list(dict.fromkeys(r["trial"] for r in rs))
        assert len(trials) == order.trials_per_participant
        assert Counter(r["group"] for r in rs if r["step_index"] == "0") == Counter(order.draw)
        if order.distinct_items:
            assert len({r["item"] for r in rs}) == len(trials)
        for r in rs:
            assert r["correct"] == str(int(r["answer"] == r["correct_answer"]))
            assert float(r["seconds"]) == 3.0 and r["too_fast"] == "0"
    # conditions balanced; within a condition, every trial of a group drawn equally often (± 1)
    conditions = Counter(rs[0]["condition"] for rs in by_person.values())
    assert set(conditions.values()) == {2}
    draws = Counter(r["trial"] for r in rows if r["step_index"] == "0")
    for condition in study.bundle.condition_names:
        for group in order.draw:
            counts = [draws.get(t.id, 0) for t in study.bundle.trials if t.condition == condition and t.group == group]
            assert max(counts) - min(counts) <= 1, (condition, group, counts)
    if study.paradigm == "progressive_reveal":  # levels always in increasing order within a trial
        for rs in by_person.values():
            for trial in dict.fromkeys(r["trial"] for r in rs):
                levels = [int(r["level"]) for r in rs if r["trial"] == trial]
                assert levels == list(REVEAL_LEVELS)


def test_a_reload_mid_trial_shows_the_same_step_and_a_replay_is_stored_once(study):
    p = WebParticipant(study.url)
    first = to_first_trial(p)
    assert p.page() == first  # reload: same trial, same step
    fields = {"trial": first["trial"], "step": first["step"], "answer": first["choices"][0]}
    assert p.submit(first["seq"], **fields).status_code == 303
    before = db_dump(study.db)
    assert p.submit(first["seq"], **fields).status_code == 303  # double click: nothing new stored
    assert db_dump(study.db) == before
    changed = p.submit(first["seq"], **{**fields, "answer": first["choices"][1]})
    assert changed.status_code == 409 and db_dump(study.db) == before
    following = p.page()
    assert following["seq"] == first["seq"] + 1
    if study.paradigm == "progressive_reveal":
        assert following["trial"] == first["trial"] and following["step"] != first["step"]


def test_tampered_trial_forms_get_a_4xx_and_change_nothing(study):
    p = WebParticipant(study.url)
    info = to_first_trial(p)
    other = next(t.id for t in study.bundle.trials if t.id != info["trial"])
    good = {"trial": info["trial"], "step": info["step"], "answer": info["choices"][0]}
    before = db_dump(study.db)
    for fields, status, message in [
        ({**good, "trial": other}, 400, "is not allowed on this page"),
        ({**good, "step": "L999"}, 400, "is not allowed on this page"),
        ({**good, "answer": "Maybe"}, 400, "choose one of"),
        ({k: v for k, v in good.items() if k != "answer"}, 400, "no answer"),
        ({**good, "extra": "1"}, 400, "unknown form field"),
    ]:
        response = p.submit(info["seq"], **fields)
        assert response.status_code == status and message in response.text, (fields, response.text[:300])
        assert "Traceback" not in response.text
    assert p.submit(info["seq"] + 1, **good).status_code == 409  # a page not yet shown
    stranger = WebParticipant(study.url)
    stranger.client.cookies.set("two4two_participant", "x" * 43)
    assert stranger.submit(info["seq"], **good).status_code == 403
    assert db_dump(study.db) == before
    assert p.submit(info["seq"], **good).status_code == 303  # the right answer still goes through


def test_too_fast_answers_are_stored_with_their_seconds_and_flagged(study):
    p = WebParticipant(study.url)
    fast = iter([0.2, 5.0])

    def on_page(info):
        study.clock.advance(next(fast, 0.5) if info["kind"] == "trial" else 10.0)

    assert p.complete_trials(lambda info: info["choices"][0], on_page=on_page)["kind"] == "complete"
    rows = export(study)
    assert [float(r["seconds"]) for r in rows[:2]] == [0.2, 5.0]
    assert [r["too_fast"] for r in rows[:3]] == ["1", "0", "1"]  # threshold 1 s (the bundle's timing)


@pytest.mark.parametrize("paradigm", PARADIGMS)
def test_bundles_that_break_the_paradigms_rules_are_refused_naming_the_field(paradigm):
    good = trial_manifest(paradigm)
    parse_manifest(copy.deepcopy(good))

    def refused(change, match):
        raw = copy.deepcopy(good)
        change(raw)
        with pytest.raises(BundleError, match=match):
            parse_manifest(raw)

    refused(lambda r: r.update(paradigm="maze"), r"paradigm: expected one of 'attribute_relevance'.*, got 'maze'")
    refused(lambda r: r["trials"][0]["steps"][0].update(choices=["A", "B"], correct="A"), r"trials\[0\]\.steps\[0\]\.choices: expected the")
    refused(lambda r: r["trials"][0]["steps"][0].update(correct="C"), r"trials\[0\]\.steps\[0\]\.correct: expected one of .*, got 'C'")
    refused(lambda r: r["trials"][0].update(condition="nobody"), r"trials\[0\]\.condition: expected .*, got 'nobody'")
    refused(lambda r: r["trials"][1].update(id=r["trials"][0]["id"]), r"trials\[1\]\.id: expected .*used once")
    refused(lambda r: r["order"]["draw"].update({next(iter(r["order"]["draw"])): 99}), r"order\.draw: expected .*a draw the trials allow")
    refused(lambda r: r["order"]["draw"].update(nothing=0), r"order\.draw\.nothing: expected .*an integer ≥ 1.*, got 0")
    refused(lambda r: r["timing"].update(too_fast_seconds=-1), r"timing\.too_fast_seconds: expected .*, got -1")
    refused(lambda r: r["conditions"][0].update(name="Bad Name"), r"conditions\[0\]\.name: expected .*, got 'Bad Name'")
    refused(lambda r: r["trials"][0].update(info={"label": "Peeky"}), r"trials\[0\]\.info: expected an object with")
    refused(lambda r: r.update(questions=[]), r"questions: unknown key")
    refused(lambda r: r["trials"][0]["info"].update(answer="x"), r"trials\[0\]\.info\.answer: expected .*other than the export's own columns")
    if paradigm == "progressive_reveal":
        refused(lambda r: r["trials"][0]["steps"].reverse(), r"trials\[0\]\.steps\[1\]\.info\.level: expected .*larger than the previous")
        refused(lambda r: r["trials"][0]["steps"].pop(), r"trials\[0\]\.steps: expected .*10 step\(s\).*, got 9")
