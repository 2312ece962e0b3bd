"""Study statistics: every number against a direct scipy/statsmodels call on hand-made answers,
exclusion rules, and malformed response files (clear error, no output)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from extras import imported
from scipy import stats

imported("study", "statsmodels")
from statsmodels.stats.contingency_tables import mcnemar  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402

from two4two.cli import main  # noqa: E402
from two4two.errors import ConfigError, ResponsesError, Two4TwoError  # noqa: E402
from two4two.study.exclusions import DEFAULT_RULES, ExclusionRule, load_rules, parse_rules  # noqa: E402
from two4two.study.responses import ATTRIBUTES, COLUMNS, Response, parse_responses, read_responses  # noqa: E402
from two4two.study.simulate import simulate_responses  # noqa: E402
from two4two.study.statistics import analyze  # noqa: E402
from two4two.study.questions import BY_NAME  # noqa: E402
from two4two.study.responses import responses_csv  # noqa: E402
from two4two.study.simulate import PAPER_ACCURACY  # noqa: E402

HEADER = ",".join(COLUMNS)


def participant(pid, condition, correct, failures=0, seconds=40.0, why=""):
    """Five answers; `correct` is the set of attributes answered correctly."""
    out = []
    for a in ATTRIBUTES:
        key = BY_NAME[a].paper_answer
        answer = key if a in correct else ("irrelevant" if key == "relevant" else "relevant")
        out.append(Response(pid, condition, a, answer, key, seconds, failures, why))
    return out


def by_count(pid, condition, k, **kw):
    """A participant with the first k attributes correct."""
    return participant(pid, condition, set(ATTRIBUTES[:k]), **kw)


# Per-participant numbers of correct answers (of 5) in three conditions.
COUNTS = {
    "baseline": [5, 4, 4, 3, 5, 2, 4, 3],
    "counterfactual": [5, 5, 4, 5, 4, 5, 3],
    "concepts": [1, 2, 0, 3, 1, 2],
}


def hand_made() -> list[Response]:
    rows = []
    for condition, counts in COUNTS.items():
        for i, k in enumerate(counts):
            rows += by_count(f"{condition[:3]}{i}", condition, k)
    return rows


def test_accuracy_tests_match_scipy():
    result = analyze(hand_made())
    acc = {c: np.array(v) / 5 for c, v in COUNTS.items()}
    tests = {(t.test, t.condition): t for t in result.tests if t.test != "fisher_exact" and t.test != "mcnemar"}

    for c in COUNTS:
        sw = stats.shapiro(acc[c])
        assert tests["shapiro", c].statistic == pytest.approx(sw.statistic, rel=1e-12)
        assert tests["shapiro", c].p == pytest.approx(sw.pvalue, rel=1e-12)
        assert result.accuracies(c) == pytest.approx(acc[c])

    kw = stats.kruskal(acc["baseline"], acc["counterfactual"], acc["concepts"])
    assert tests["kruskal", None].statistic == pytest.approx(kw.statistic, rel=1e-12)
    assert tests["kruskal", None].p == pytest.approx(kw.pvalue, rel=1e-12)

    mwu_p = []
    for c in ("counterfactual", "concepts"):
        t = tests["mannwhitneyu", c]
        ref = stats.mannwhitneyu(acc[c], acc["baseline"], alternative="two-sided")
        assert (t.statistic, t.p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
        n = len(acc[c]) + len(acc["baseline"])
        sign = 1 if acc[c].mean() > acc["baseline"].mean() else -1
        assert t.effect_size_r == pytest.approx(sign * stats.norm.isf(ref.pvalue / 2) / math.sqrt(n), rel=1e-12)
        assert t.p_corrected == pytest.approx(min(1.0, 2 * ref.pvalue), rel=1e-12)  # Bonferroni over 2
        mwu_p.append(ref.pvalue)
    assert tests["mannwhitneyu", "concepts"].effect_size_r < -0.5  # concepts clearly worse

    # Per attribute: Fisher's exact test on counts worked out by hand from COUNTS.
    fisher = {(t.condition, t.attribute): t for t in result.tests if t.test == "fisher_exact"}
    assert len(fisher) == 10
    fisher_p = []
    for c in ("counterfactual", "concepts"):
        for j, a in enumerate(ATTRIBUTES):
            right = sum(k > j for k in COUNTS[c])
            base_right = sum(k > j for k in COUNTS["baseline"])
            table = [[right, len(COUNTS[c]) - right], [base_right, len(COUNTS["baseline"]) - base_right]]
            ref = stats.fisher_exact(table)
            assert fisher[c, a].p == pytest.approx(ref.pvalue, rel=1e-12)
            assert fisher[c, a].details["table"] == table
            fisher_p.append(ref.pvalue)

    # Holm over Kruskal–Wallis, both Mann–Whitney tests and the 10 attribute tests (the paper's family).
    family = [kw.pvalue] + mwu_p + fisher_p
    holm = multipletests(family, method="holm")[1]
    got = [tests["kruskal", None].p_holm] + [tests["mannwhitneyu", c].p_holm for c in ("counterfactual", "concepts")]
    got += [fisher[c, a].p_holm for c in ("counterfactual", "concepts") for a in ATTRIBUTES]
    assert got == pytest.approx(list(holm), rel=1e-12)
    assert [fisher[c, a].p_corrected for c in ("counterfactual", "concepts") for a in ATTRIBUTES] == pytest.approx(list(holm[3:]))


def test_table_two_numbers():
    result = analyze(hand_made())
    rows = {r.condition: r for r in result.rows}
    assert list(rows) == ["baseline", "counterfactual", "concepts", "all conditions"]
    for c, counts in COUNTS.items():
        row = rows[c]
        assert (row.n_collected, row.n_filtered) == (len(counts), len(counts))
        assert row.overall == pytest.approx(100 * np.mean(counts) / 5)
        for j, a in enumerate(ATTRIBUTES):
            assert row.attribute_n[a] == len(counts)
            assert row.attribute_percent[a] == pytest.approx(100 * sum(k > j for k in counts) / len(counts))
    every = [k for v in COUNTS.values() for k in v]
    assert rows["all conditions"].overall == pytest.approx(100 * np.mean(every) / 5)
    # Stars: the concepts row carries those of its Bonferroni-corrected Mann–Whitney p.
    p = rows["concepts"].overall_p
    stars = "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""
    assert stars and rows["baseline"].overall_p is None
    assert f"| concepts | 6 | 6 | {stars}{100 * np.mean(COUNTS['concepts']) / 5:.1f} |" in result.format_table()


def test_mcnemar_exact_known_p():
    # legs vs colour: 5 both right, 8 legs only, 1 colour only, 2 both wrong.
    rows = []
    plan = [({"legs", "colour"}, 5), ({"legs"}, 8), ({"colour"}, 1), (set(), 2)]
    i = 0
    for correct, n in plan:
        for _ in range(n):
            rows += participant(f"p{i}", "baseline", correct)
            i += 1
    result = analyze(rows)
    t = next(t for t in result.tests if t.test == "mcnemar" and t.attribute == "colour")
    # Exact two-sided binomial p of 1 success in 9 discordant pairs: 2 * (1 + 9) / 2**9.
    assert t.p == pytest.approx(20 / 512, rel=1e-12)
    assert t.p == pytest.approx(mcnemar([[5, 8], [1, 2]], exact=True).pvalue, rel=1e-12)
    assert t.statistic == 1
    assert t.details["table"] == [[5, 8], [1, 2]]
    assert t.n == 16
    assert t.effect_size_r == pytest.approx(-stats.norm.isf(20 / 512 / 2) / 4)  # colour worse than legs
    family = [x for x in result.tests if x.test == "mcnemar" and x.condition == "baseline"]
    assert [x.p_corrected for x in family] == pytest.approx(list(multipletests([x.p for x in family], method="holm")[1]))
    # Only one condition: no between-condition test runs.
    assert next(x for x in result.tests if x.test == "kruskal").skipped


def test_one_sided_expectation_matches_scipy():
    result = analyze(hand_made(), expect={"counterfactual": "greater", "concepts": "less"})
    acc = {c: np.array(v) / 5 for c, v in COUNTS.items()}
    for c, alt in (("counterfactual", "greater"), ("concepts", "less")):
        t = next(t for t in result.tests if t.test == "mannwhitneyu" and t.condition == c)
        assert t.alternative == alt
        assert t.p == pytest.approx(stats.mannwhitneyu(acc[c], acc["baseline"], alternative=alt).pvalue, rel=1e-12)
        two_sided = stats.mannwhitneyu(acc[c], acc["baseline"]).pvalue  # r does not depend on the direction
        assert abs(t.effect_size_r) == pytest.approx(stats.norm.isf(two_sided / 2) / math.sqrt(len(acc[c]) + len(acc["baseline"])))
    with pytest.raises(ResponsesError, match="sideways"):
        analyze(hand_made(), expect={"counterfactual": "sideways"})


def test_default_rules_exclude_participants_as_the_paper():
    rows = hand_made()
    rows += by_count("failed", "baseline", 5, failures=2)  # failed a comprehension test twice
    rows += by_count("rushed", "baseline", 5, seconds=5.0)  # 25 s for all five answers
    rows += by_count("quick_but_ok", "baseline", 1, seconds=6.5)  # 32.5 s in total: kept
    result = analyze(rows)
    counts = {c.rule.name: (c.participants, c.answers) for c in result.exclusions.counts}
    assert counts == {"comprehension_failed_twice": (1, 5), "answered_in_under_30s": (1, 5)}
    assert result.exclusions.participant_reasons == {
        "failed": ["comprehension_failed_twice"],
        "rushed": ["answered_in_under_30s"],
    }
    base = result.rows[0]
    assert (base.n_collected, base.n_filtered) == (len(COUNTS["baseline"]) + 3, len(COUNTS["baseline"]) + 1)
    assert base.overall == pytest.approx(100 * np.mean(COUNTS["baseline"] + [1]) / 5)
    assert "in total: 2 of 24 participants excluded; 0 answers dropped from the others; 110 answers analysed" in result.exclusions.format()
    assert load_rules("configs/study_exclusions.yaml") == list(DEFAULT_RULES)


def test_answer_rules_drop_single_answers(tmp_path):
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps({"rules": [
        {"name": "too_fast", "column": "seconds", "op": "<", "value": 2, "scope": "answer"},
        {"name": "no_reason", "column": "justification", "op": "==", "value": "", "scope": "answer"},
    ]}))
    rules = load_rules(rules_file)
    rows = by_count("a", "baseline", 5, why="because")
    rows += [r if r.attribute != "legs" else Response(**{**r.__dict__, "seconds": 1.0}) for r in by_count("b", "baseline", 4, why="x")]
    rows += by_count("c", "baseline", 2, why="")  # every answer lacks a justification
    result = analyze(rows, rules)
    counts = {c.rule.name: c.answers for c in result.exclusions.counts}
    assert counts == {"too_fast": 1, "no_reason": 5}
    accuracy = {p.participant_id: (p.answers, p.correct, p.included) for p in result.participants}
    assert accuracy == {"a": (5, 5, True), "b": (4, 3, True), "c": (0, 0, False)}
    assert result.exclusions.participant_reasons == {"c": ["no_answers_left"]}
    assert result.rows[0].attribute_n == {"legs": 1, "colour": 2, "background": 2, "shape": 2, "rotation_bending": 2}
    assert result.exclusions.excluded_answers == 1


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"name": "x", "column": "secs", "op": "<", "value": 1}, "column: expected one of participant_id, condition"),
        ({"name": "x", "column": "seconds", "op": "=<", "value": 1}, "op: expected one of "),
        ({"name": "x", "column": "seconds", "op": "<", "value": "1"}, "value: expected a number for column seconds, got '1'"),
        ({"name": "x", "column": "condition", "op": "<", "value": "a"}, "op: expected == or != on text column condition"),
        ({"name": "x", "column": "seconds", "op": "<", "value": 1, "scope": "answer", "aggregate": "sum"}, "aggregate: expected any, or scope participant"),
        ({"name": "x", "column": "seconds", "op": "<", "value": 1, "scope": "row"}, "scope: expected one of participant, answer, got 'row'"),
        ({"name": "x", "column": "seconds", "op": "<", "value": 1, "when": 2}, "rules[0].when: unknown key; allowed: "),
        ({"name": "x", "column": "seconds", "op": "<"}, "rules[0].value: missing; required: name, column, op, value"),
    ],
)
def test_bad_rules_are_config_errors(rule, message):
    with pytest.raises(ConfigError) as info:
        parse_rules([rule], "rules.yaml")
    assert message in str(info.value) and "rules.yaml: rules[0]" in str(info.value)


def test_duplicate_rule_names_rejected():
    rule = {"name": "x", "column": "seconds", "op": "<", "value": 1}
    with pytest.raises(ConfigError, match="rules\\[1\\].name: expected a name no earlier rule uses, got 'x'"):
        parse_rules({"rules": [rule, rule]})


def test_csv_quoting_and_line_numbers(tmp_path):
    rows = by_count("p1", "baseline", 3, why='He said "legs", then\nchanged his mind, twice')
    text = responses_csv(rows)
    path = tmp_path / "r.csv"
    path.write_text(text)
    assert [r.justification for r in read_responses(path)] == [r.justification for r in rows]
    # Each record spans two lines, so the third (background) starts on line 6 of the file.
    lines = text.splitlines(keepends=True)
    assert lines[5].startswith("p1,baseline,background,")
    lines[5] = lines[5].replace(",background,", ",backdrop,")
    path.write_text("".join(lines))
    with pytest.raises(ResponsesError, match=f"{path}, line 6: attribute 'backdrop' is not allowed"):
        read_responses(path)


def good_text() -> str:
    return responses_csv(hand_made())


def break_line(text: str, line: int, old: str, new: str) -> str:
    lines = text.splitlines(keepends=True)
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    return "".join(lines)


MALFORMED = {
    "missing column": (lambda t: t.replace(",seconds,", ",", 1), ["line 1", "missing column(s) seconds"]),
    "unknown column": (lambda t: t.replace("justification", "justification,notes", 1), ["unknown column(s) 'notes'"]),
    "unknown attribute": (lambda t: break_line(t, 3, ",colour,", ",color,"), ["line 3", "attribute 'color'", "legs, colour, background, shape, rotation_bending"]),
    "bad answer": (lambda t: break_line(t, 2, ",relevant,relevant,", ",yes,relevant,"), ["line 2", "answer 'yes'", "relevant, irrelevant"]),
    "negative seconds": (lambda t: break_line(t, 4, ",40.0,", ",-3,"), ["line 4", "seconds '-3'"]),
    "fractional failures": (lambda t: break_line(t, 4, ",40.0,0,", ",40.0,1.5,"), ["line 4", "comprehension_failures '1.5'", "integer"]),
    "empty participant": (lambda t: break_line(t, 2, "bas0,", ","), ["line 2", "participant_id ''"]),
    "too many fields": (lambda t: break_line(t, 5, "\n", ",extra\n"), ["line 5", "9 fields, but the header has 8"]),
    "duplicate answer": (lambda t: break_line(t, 3, ",colour,", ",legs,"), ["participant 'bas0'", "answers legs twice", "lines 2 and 3"]),
    "missing attribute": (lambda t: "".join(l for i, l in enumerate(t.splitlines(True)) if i != 6), ["participant 'bas1'", "no answer for legs"]),
    "two conditions": (lambda t: break_line(t, 6, "bas0,baseline", "bas0,concepts"), ["participant 'bas0'", "two conditions"]),
    "inconsistent failures": (lambda t: break_line(t, 4, ",40.0,0,", ",40.0,1,"), ["participant 'bas0'", "comprehension_failures 0 on line 2 but 1 on line 4"]),
    "header only": (lambda t: t.splitlines(True)[0], ["no responses after the header"]),
    "empty file": (lambda t: "", ["empty file"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_clear_error_and_no_output(case, tmp_path, capsys):
    mutate, fragments = MALFORMED[case]
    path = tmp_path / "responses.csv"
    path.write_text(mutate(good_text()))
    with pytest.raises(Two4TwoError) as info:
        read_responses(path)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert str(path) in str(info.value)
    out_dir = tmp_path / "out"
    assert main(["study", "analyze", str(path), "-o", str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("two4two: error:") and fragments[0] in err
    assert not out_dir.exists()


def test_cli_bad_rules_leaves_existing_output_untouched(tmp_path, capsys):
    path = tmp_path / "responses.csv"
    path.write_text(good_text())
    out_dir = tmp_path / "out"
    assert main(["study", "analyze", str(path), "-o", str(out_dir)]) == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: x, column: seconds, op: '<', value: fast}\n")
    capsys.readouterr()
    assert main(["study", "analyze", str(path), "--rules", str(rules), "-o", str(out_dir)]) == 2
    assert "value: expected a number for column seconds, got 'fast'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before


@pytest.mark.slow  # simulates 36 participants, analyses them and draws the figure
def test_cli_simulate_then_analyze(tmp_path, capsys):
    responses = tmp_path / "sim.csv"
    assert main(["study", "simulate", "--per-condition", "12", "--seed", "3", "-o", str(responses)]) == 0
    assert main(["study", "analyze", str(responses), "--expect", "counterfactual=greater"]) == 0
    out = capsys.readouterr().out
    out_dir = tmp_path / "sim_analysis"
    assert sorted(p.name for p in out_dir.iterdir()) == ["correct_answers.png", "participants.csv", "table.csv", "table.md", "tests.json"]
    assert "| baseline | 12 |" in out and "mannwhitneyu" in out
    doc = json.loads((out_dir / "tests.json").read_text())
    expected = analyze(read_responses(responses), expect={"counterfactual": "greater"}, source=str(responses))
    assert [t["p"] for t in doc["tests"]] == [t.p for t in expected.tests]
    assert doc["exclusions"]["participants_collected"] == 36
    assert doc["exclusions"]["participants_kept"] + doc["exclusions"]["participants_excluded"] == 36
    assert (out_dir / "correct_answers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out_dir / "table.csv").read_text().splitlines()
    assert table[0].startswith("condition,n_collected,n_filtered,overall_percent") and len(table) == 5


def test_writing_an_analysis_leaves_no_temporary_files(tmp_path):
    paths = analyze(hand_made()).write(tmp_path)
    assert sorted(p.name for p in paths.values()) == sorted(p.name for p in tmp_path.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_simulated_accuracy_matches_its_targets():
    rows = simulate_responses(400, seed=7)
    assert len({r.participant_id for r in rows}) == 1200
    parse_responses(responses_csv(rows))  # the simulator writes valid files
    for condition, targets in PAPER_ACCURACY.items():
        for a, percent in targets.items():
            cell = [r.correct for r in rows if r.condition == condition and r.attribute == a]
            if percent == 100.0:
                assert all(cell)
                continue
            p = stats.binomtest(sum(cell), len(cell), percent / 100).pvalue
            assert p > 0.001, (condition, a, np.mean(cell), percent)


def test_exclusion_rule_aggregates():
    rows = by_count("p", "baseline", 5, seconds=10.0)
    assert ExclusionRule("r", "seconds", "<", 60, aggregate="sum").excludes_participant(rows)
    assert not ExclusionRule("r", "seconds", "<", 40, aggregate="sum").excludes_participant(rows)
    assert ExclusionRule("r", "seconds", "<=", 10, aggregate="all").excludes_participant(rows)
    assert not ExclusionRule("r", "seconds", "<", 10, aggregate="any").excludes_participant(rows)


@pytest.mark.parametrize("expect, message", [("counterfactual", "expected CONDITION=greater|less, e.g. counterfactual=greater"),
                                             ("counterfactual=sideways", "got 'counterfactual=sideways'"),
                                             ("control=less", "condition 'control'")])
def test_cli_bad_expectation_is_a_user_error(expect, tmp_path, capsys, message):
    path = tmp_path / "responses.csv"
    path.write_text(good_text())
    try:  # a malformed one is refused while parsing (SystemExit), an unknown condition by the analysis
        code = main(["study", "analyze", str(path), "--expect", expect, "-o", str(tmp_path / "out")])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
