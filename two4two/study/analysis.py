"""Statistics of the bias-discovery user study (Sixt et al. 2022, sections 5.2–5.3, Table 2, Figure 4).

Participants rate five attributes as relevant or irrelevant for the classifier whose explanation
they saw (their condition); the share they rate correctly is their accuracy. The pieces, one
module each: `responses` (the CSV format, reading, writing, design checks), `exclusions` (rules
as data), `statistics` (the paper's tests, all from scipy.stats/statsmodels, and the written
analysis) and `simulate` (responses with planted effects). The README's "User-study
statistics" documents the responses format, the default exclusions and each test.
"""

from two4two.study.exclusions import DEFAULT_RULES, ExclusionRule, apply_exclusions, load_rules, parse_rules
from two4two.study.responses import ATTRIBUTES, COLUMNS, Response, parse_responses, read_responses, write_responses
from two4two.study.simulate import simulate_responses
from two4two.study.statistics import StudyAnalysis, TestResult, analyze, effect_size_r

__all__ = [
    "ATTRIBUTES",
    "COLUMNS",
    "DEFAULT_RULES",
    "ExclusionRule",
    "Response",
    "StudyAnalysis",
    "TestResult",
    "analyze",
    "apply_exclusions",
    "effect_size_r",
    "load_rules",
    "parse_responses",
    "parse_rules",
    "read_responses",
    "simulate_responses",
    "write_responses",
]
