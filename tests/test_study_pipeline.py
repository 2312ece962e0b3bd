"""One study pipeline: the 2022 study and the trial paradigms go through the same calls (and
the same commands); the bundle's paradigm picks the statistics, and an option a paradigm does
not read is refused with its name instead of being ignored."""

from __future__ import annotations

import json

import pytest
from extras import imported

imported("study", "statsmodels")

from study_fixtures import ANSWER_KEY, make_bundle, make_trial_bundle  # noqa: E402
from two4two.cli import main  # noqa: E402
from two4two.errors import Two4TwoError  # noqa: E402
from two4two.study.bundle import load_bundle  # noqa: E402
from two4two.study.pipeline import STUDIES, analyze, simulate, study_of  # noqa: E402
from two4two.study.responses import parse_responses  # noqa: E402


def test_every_paradigm_is_one_study_of_the_pipeline():
    from two4two.study.paradigms import PARADIGM_NAMES

    assert set(STUDIES) == set(PARADIGM_NAMES)
    assert study_of(None) is STUDIES["attribute_relevance"]


def test_a_2022_bundle_is_simulated_with_its_own_conditions_and_answer_key(tmp_path):
    flipped = {a: "irrelevant" if v == "relevant" else "relevant" for a, v in ANSWER_KEY.items()}
    root = make_bundle(tmp_path / "b", conditions=("baseline", "concepts"))
    raw = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**raw, "answer_key": flipped}))
    simulated = simulate(load_bundle(root), 5, seed=1)
    rows = parse_responses(simulated.csv)
    assert {r.condition for r in rows} == {"baseline", "concepts"} and simulated.participants == 10
    assert all(r.expected == flipped[r.attribute] for r in rows) and simulated.answers == len(rows) == 50
    analysis = analyze_csv(tmp_path, simulated.csv, load_bundle(root))
    assert analysis.conditions == ["baseline", "concepts"]


def analyze_csv(tmp_path, text, bundle=None, **options):
    path = tmp_path / "responses.csv"
    path.write_text(text)
    return analyze(path, bundle, **options)


def test_an_option_the_paradigm_does_not_read_is_refused(tmp_path):
    trial = load_bundle(make_trial_bundle(tmp_path / "guess", "guess_output"))
    with pytest.raises(Two4TwoError, match="--effect: not read by the 2022 study .* it reads no such options"):
        simulate(None, 3, effect=["baseline=0.1"])
    with pytest.raises(Two4TwoError, match="--rules: not read by the trial paradigm; it reads --scores, --keep-too-fast"):
        analyze_csv(tmp_path, simulate(trial, 2).csv, trial, rules="rules.yaml")
    with pytest.raises(Two4TwoError, match="--scores: not read by the 2022 study"):
        analyze_csv(tmp_path, simulate(None, 2).csv, None, scores="scores.csv")


@pytest.mark.slow
def test_the_commands_do_not_fork_on_the_paradigm(tmp_path, capsys):
    b2022 = make_bundle(tmp_path / "b2022")
    for bundle, paradigm in ((b2022, "attribute_relevance"), (make_trial_bundle(tmp_path / "acc", "accept_reject", items=18), "accept_reject")):
        out = tmp_path / paradigm
        assert main(["study", "simulate", "--bundle", str(bundle), "--paradigm", paradigm, "--per-condition", "6", "-o", str(out)]) == 0
        assert f"synthetic {paradigm} answers" in capsys.readouterr().out
        assert main(["study", "analyze", str(out / "responses.csv"), "--bundle", str(bundle), "-o", str(out / "analysis")]) == 0
        assert any(p.suffix == ".png" for p in (out / "analysis").iterdir())
    assert main(["study", "simulate", "--paradigm", "guess_output", "-o", str(tmp_path / "x")]) == 2
    assert "pass --bundle" in capsys.readouterr().err
