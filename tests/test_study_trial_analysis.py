"""The trial paradigms' statistics on simulated participants: planted effects are found in their
direction and with Holm-corrected significance; with nothing planted, a family of tests rejects
no more often than the nominal 5 % (bounded by a binomial test over seeds); too-fast answers are
excluded and counted; the CLI simulates, analyses and writes every output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from extras import imported

imported("study", "statsmodels")

from study_fixtures import make_trial_bundle, trial_manifest  # noqa: E402
from two4two.cli import main  # noqa: E402
from two4two.study.bundle import parse_manifest  # noqa: E402
from two4two.study.trial_analysis import (  # noqa: E402
    TrialAnalysisError,
    analyze_trials,
    read_trial_responses,
    simulate_trial_responses,
)


def bundle(paradigm: str, draw: dict | None = None, items: int = 6):
    raw = trial_manifest(paradigm, items)
    if draw:
        raw["order"]["draw"] = draw
    return parse_manifest(raw)


REVEAL = dict(draw={"gradient": 4, "guided_backprop": 4, "grad_cam": 4})
ACCEPT = dict(draw={"easy": 5, "medium": 5, "hard": 5}, items=18)
GUESS = dict(draw={"misclassified": 4, "correct": 4}, items=24)


def test_progressive_reveal_finds_a_method_that_helps_at_one_level_only():
    b = bundle("progressive_reveal", **REVEAL)
    frame = simulate_trial_responses(b, 40, {"guided_backprop@15": 0.3}, seed=3)
    result = analyze_trials(frame, b, automatic={"gradient": 0.8, "guided_backprop": 0.5, "grad_cam": 0.9})
    significant = [t for t in result.tests if t.significant]
    assert significant and all("at 15 %" in t.name and "guided_backprop" in t.name for t in significant)
    for t in significant:  # guided backprop is the better one in each pair
        first = t.name.split(" vs ")[0]
        assert (t.effect > 0) == (first == "guided_backprop")
    table = result.table.set_index(["method", "level"])
    assert table.loc[("guided_backprop", 15), "accuracy"] - table.loc[("gradient", 15), "accuracy"] > 0.2
    # accuracy rises with the level for every method (the base curve), and "I don't know" falls
    for method, rows in result.table.groupby("method"):
        assert rows.sort_values("level")["accuracy"].iloc[-1] > rows.sort_values("level")["accuracy"].iloc[0] + 0.3
        assert rows.sort_values("level")["dont_know"].iloc[0] > rows.sort_values("level")["dont_know"].iloc[-1]
    assert result.summary["human_ranking"][0] == "guided_backprop"
    assert result.summary["model_ranking"] == ["guided_backprop", "gradient", "grad_cam"]
    assert -1 <= result.summary["kendall_tau"] <= 1


def test_accept_or_reject_finds_that_three_nn_raises_team_accuracy_by_ten_points():
    b = bundle("accept_reject", **ACCEPT)
    frame = simulate_trial_responses(b, 60, {"knn": 0.10}, seed=5)
    result = analyze_trials(frame, b)
    tests = {t.name: t for t in result.tests}
    for other in ("confidence", "grad_cam"):
        t = tests[f"{other} vs knn"]
        assert t.significant and t.effect < -0.05, t
    assert not tests["confidence vs grad_cam"].significant
    # per-bin accuracies follow the planted base rates: easy > medium > hard in every condition
    for condition, rows in result.table.groupby("condition"):
        acc = rows.assign(difficulty=rows["bin"].str.split("_").str[0]).groupby("difficulty")["accuracy"].mean()
        assert acc["easy"] > acc["medium"] > acc["hard"], condition


def test_guess_the_output_finds_that_maps_lower_guessing_accuracy_with_fishers_exact_test():
    b = bundle("guess_output", **GUESS)
    frame = simulate_trial_responses(b, 40, {"grad_cam": -0.12}, seed=7)
    result = analyze_trials(frame, b)
    (test,) = result.tests
    assert test.name == "grad_cam vs no_map" and test.significant and test.effect < -0.05
    by = result.table.set_index(["condition", "group"])["accuracy"]
    assert by[("no_map", "misclassified")] < by[("no_map", "correct")]  # errors are harder to guess


@pytest.mark.slow  # 40 simulated studies per paradigm
@pytest.mark.parametrize("paradigm,options", [("progressive_reveal", REVEAL), ("accept_reject", ACCEPT), ("guess_output", GUESS)])
def test_without_a_planted_effect_the_family_rejects_at_most_at_the_nominal_rate(paradigm, options):
    """Holm keeps the family-wise error ≤ 5 %: over 40 seeds, the number of seeds with any
    rejection must not exceed what Binomial(40, 0.05) gives with probability 0.999 (7)."""
    from scipy import stats

    b = bundle(paradigm, **options)
    rejected = sum(any(t.significant for t in analyze_trials(simulate_trial_responses(b, 12, seed=seed), b).tests)
                   for seed in range(40))
    assert rejected <= stats.binom.ppf(0.999, 40, 0.05)


def test_too_fast_answers_are_excluded_and_counted_unless_kept():
    b = bundle("guess_output", **GUESS)
    frame = simulate_trial_responses(b, 10, seed=1, too_fast_share=0.2)
    fast = int(frame["too_fast"].sum())
    assert 0.1 * len(frame) < fast < 0.3 * len(frame)
    assert (frame.loc[frame["too_fast"] == 1, "seconds"] < b.too_fast_seconds).all()
    result = analyze_trials(frame, b)
    assert result.excluded_too_fast == fast and result.answers == len(frame) - fast
    kept = analyze_trials(frame, b, keep_too_fast=True)
    assert kept.answers == len(frame) and kept.excluded_too_fast == 0


def test_bad_effects_and_mismatched_bundles_are_refused_with_the_reason(capsys):
    for effect in ("knn", "knn=2", "knn=nan"):  # refused while the command line is parsed
        with pytest.raises(SystemExit) as exit_:
            main(["study", "simulate", "--effect", effect, "-o", "never"])
        assert exit_.value.code == 2 and f"expected KEY=DELTA with DELTA in [-1, 1], e.g. knn=0.1, got {effect!r}" in capsys.readouterr().err
    b = bundle("accept_reject", **ACCEPT)
    with pytest.raises(TrialAnalysisError, match="effect 'magic': no such condition"):
        simulate_trial_responses(b, 2, {"magic": 0.1})
    frame = simulate_trial_responses(bundle("guess_output", **GUESS), 2)
    with pytest.raises(TrialAnalysisError, match="is not in the bundle"):
        analyze_trials(frame, b)


def test_simulate_and_analyze_from_the_command_line(tmp_path, capsys):
    bundle_dir = make_trial_bundle(tmp_path / "reveal", "progressive_reveal")
    responses = tmp_path / "reveal.csv"
    assert main(["study", "simulate", "--bundle", str(bundle_dir), "--per-condition", "8", "--seed", "2",
                 "--effect", "grad_cam@26=0.2", "-o", str(responses)]) == 0
    frame = read_trial_responses(responses)
    assert frame["participant_id"].nunique() == 8 and set(frame["level"]) == {5, 6, 8, 11, 15, 19, 26, 34, 45, 60}
    scores = tmp_path / "attribution_scores.csv"
    scores.write_text("method,score,value\ngradient,reveal_cross_entropy,0.8\ngrad_cam,reveal_cross_entropy,0.6\n"
                      "guided_backprop,reveal_cross_entropy,0.7\ngradient,wsl,0.2\n")
    out = tmp_path / "analysis"
    assert main(["study", "analyze", str(responses), "--bundle", str(bundle_dir), "--scores", str(scores), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "progressive_reveal: 8 participants" in printed
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["summary"]["model_ranking"] == ["grad_cam", "guided_backprop", "gradient"]
    assert len(saved["tests"]) == 10 * 3 and all(0 <= t["p"] <= 1 for t in saved["tests"])
    assert (out / "figure.png").read_bytes()[:4] == b"\x89PNG"
    per = (out / "per_participant.csv").read_text().splitlines()
    assert per[0] == "participant_id,grad_cam,gradient,guided_backprop" and len(per) == 1 + 8
    values = np.array([[float(v) for v in line.split(",")[1:]] for line in per[1:]])
    assert ((values >= 0) & (values <= 1)).all() and values.std() > 0
    assert main(["study", "simulate", "--effect", "x=0.1", "-o", str(tmp_path / "x.csv")]) == 2
    assert main(["study", "simulate", "--paradigm", "guess_output", "--bundle", str(bundle_dir), "-o", str(tmp_path / "x.csv")]) == 2
    assert "is a progressive_reveal study" in capsys.readouterr().err
    assert main(["study", "simulate", "--paradigm", "progressive_reveal", "--bundle", str(bundle_dir), "-o", str(tmp_path / "x.csv")]) == 0
