"""The user study: statistics of participants' answers (analysis); see two4two.study.analysis."""

from two4two.study.analysis import (
    ATTRIBUTES,
    DEFAULT_RULES,
    ExclusionRule,
    Response,
    StudyAnalysis,
    analyze,
    load_rules,
    read_responses,
    simulate_responses,
    write_responses,
)

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_RULES",
    "ExclusionRule",
    "Response",
    "StudyAnalysis",
    "analyze",
    "load_rules",
    "read_responses",
    "simulate_responses",
    "write_responses",
]
