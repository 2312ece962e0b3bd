"""Writing an analysis: Markdown, CSV tables and the figure, all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from two4two.io import atomic_write_files
from two4two.study.exclusions import DEFAULT_RULES, load_rules
from two4two.study.responses import read_responses
from two4two.study.statistics import StudyAnalysis, analyze

OUTPUT_FILES = {
    "markdown": "table.md",
    "table": "table.csv",
    "participants": "participants.csv",
    "tests": "tests.json",
    "figure": "correct_answers.png",
}


def write_outputs(analysis: StudyAnalysis, out_dir: str | Path) -> dict[str, Path]:
    """Table (markdown, CSV), per-participant accuracy, tests JSON and the figure into out_dir."""
    out_dir = Path(out_dir)
    contents = {
        "markdown": analysis.markdown().encode(),
        "table": analysis.table_csv().encode(),
        "participants": analysis.participants_csv().encode(),
        "tests": analysis.to_json().encode(),
        "figure": analysis.figure_png(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / OUTPUT_FILES[key] for key in contents}
    atomic_write_files({paths[key]: data for key, data in contents.items()})
    return paths


def analyze_file(
    path: str | Path,
    rules_path: str | Path | None = None,
    baseline: str = "baseline",
    reference_attribute: str = "legs",
    expect: Mapping[str, str] | None = None,
) -> StudyAnalysis:
    rules = load_rules(rules_path) if rules_path else list(DEFAULT_RULES)
    return analyze(read_responses(path), rules, baseline, reference_attribute, expect, source=str(path))
