"""The human-vs-automatic report: per method, automatic scores beside each paradigm's human measure,
and rank correlations whose sign and interval follow what was planted in simulated participants."""

from __future__ import annotations

import json

import pytest
from extras import imported

imported("study", "statsmodels")

from study_fixtures import make_trial_bundle  # noqa: E402
from two4two.cli import main  # noqa: E402
from two4two.study.paradigms import REVEAL_LEVELS  # noqa: E402
from two4two.study.report import ReportError, read_human, side_by_side  # noqa: E402

SCORES = {"gradient": 0.5, "guided_backprop": 0.2, "grad_cam": 0.8}  # a score that orders the methods


def simulated_analysis(tmp_path, paradigm, effects, name):
    bundle_dir = make_trial_bundle(tmp_path / f"{name}_bundle", paradigm)
    responses, out = tmp_path / f"{name}.csv", tmp_path / f"{name}_analysis"
    assert main(["study", "simulate", "--bundle", str(bundle_dir), "--per-condition", "30", "--seed", "4",
                 *(["--effect", *effects] if effects else []), "-o", str(responses)]) == 0
    assert main(["study", "analyze", str(responses), "--bundle", str(bundle_dir), "-o", str(out)]) == 0
    return out


def scores_file(tmp_path, sign=1.0):
    path = tmp_path / "attribution_scores.csv"
    rows = [f"{m},pointing_game_animal,{sign * v}" for m, v in SCORES.items()]
    rows += [f"{m},reveal_cross_entropy,{1 - v}" for m, v in SCORES.items()]
    path.write_text("method,score,value\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_a_score_that_orders_methods_as_people_do_correlates_positively_with_an_interval_above_zero(tmp_path, capsys):
    # people do best with grad_cam, then gradient, then guided_backprop: the order of SCORES
    effects = [f"grad_cam@{level}=0.25" for level in REVEAL_LEVELS[:6]] + [f"gradient@{level}=0.12" for level in REVEAL_LEVELS[:6]]
    reveal = simulated_analysis(tmp_path, "progressive_reveal", effects, "reveal")
    accept = simulated_analysis(tmp_path, "accept_reject", [], "accept")
    out = tmp_path / "report"
    assert main(["study", "report", "--scores", str(scores_file(tmp_path)), "--analysis", str(reveal), str(accept),
                 "--score-names", "pointing_game_animal", "reveal_cross_entropy", "--resamples", "300", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    by = {(c["score"], c["measure"].split(":")[0]): c for c in report["correlations"]}
    up = by[("pointing_game_animal", "progressive_reveal")]
    assert up["n"] == 3 and up["rho"] == pytest.approx(1.0) and up["low"] > 0
    down = by[("reveal_cross_entropy", "progressive_reveal")]  # lower cross-entropy for the better methods
    assert down["rho"] == pytest.approx(-1.0) and down["high"] < 0
    # accept/reject's fixture has one map condition: no correlation is claimed from one method
    assert by[("pointing_game_animal", "accept_reject")]["n"] == 1 and by[("pointing_game_animal", "accept_reject")]["rho"] is None
    human = report["human"]["progressive_reveal: reveal accuracy"]
    assert human["grad_cam"] > human["gradient"] > human["guided_backprop"]
    assert "| grad_cam | progressive_reveal" not in capsys.readouterr().out  # methods are printed by their labels
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG" and "Grad-CAM" in (out / "report.md").read_text()


@pytest.mark.slow
def test_without_a_planted_order_the_interval_covers_zero(tmp_path):
    reveal = simulated_analysis(tmp_path, "progressive_reveal", [], "null")
    result = side_by_side({"pointing_game_animal": SCORES}, [read_human(reveal)], ["pointing_game_animal"], resamples=300)
    (c,) = result.correlations
    assert c["low"] <= 0 <= c["high"]


def test_the_report_names_what_is_missing(tmp_path):
    reveal = simulated_analysis(tmp_path, "progressive_reveal", [], "x")
    with pytest.raises(ReportError, match="'wsl' is not in the attribution score table"):
        side_by_side({"pointing_game_animal": SCORES}, [read_human(reveal)], ["wsl"])
    with pytest.raises(ReportError, match="no analysis.json"):
        read_human(tmp_path)
