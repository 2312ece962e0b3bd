"""Statistics of the bias-discovery user study (Sixt et al. 2022, sections 5.2–5.3, Table 2, Figure 4).

Participants look at one explanation of a biased classifier (their *condition*) and rate five
attributes as relevant or irrelevant for it; the share they rate correctly is their accuracy.
This module reads their answers, applies the exclusion rules, and runs the paper's tests;
it gathers the pieces, one module each: `responses` (schema, reading, writing, design
checks), `exclusions` (rules as data), `statistics` (the tests and the analysis),
`StudyAnalysis.write` (Markdown, CSV, figure) and `simulate` (responses with planted effects).

Responses file (the study app exports exactly this): CSV, UTF-8, long format, one row per
participant × question, header

    participant_id,condition,attribute,answer,expected,seconds,comprehension_failures,justification

- participant_id: non-empty text; each participant answers each attribute exactly once
- condition: non-empty text, one per participant (the study used baseline, counterfactual,
  concepts; the analysis compares whichever conditions are present)
- attribute: legs, colour, background, shape or rotation_bending
- answer, expected: relevant or irrelevant (expected is the answer key)
- seconds: number ≥ 0, time spent on that question's page
- comprehension_failures: integer ≥ 0, failed comprehension checks of that participant
  (the same on all of their rows)
- justification: free text, may be empty (quoted as CSV requires)

Exclusion rules are data (YAML or JSON, see configs/study_exclusions.yaml): a list of
{name, column, op, value, scope, aggregate}. scope "participant" drops a participant when
the rule holds for any of their rows (aggregate: any, the default), for all of them (all),
or for the sum/mean/min/max of the column over their rows; scope "answer" drops single rows.
The defaults are the paper's automatic exclusions that a responses file can express
(preregistration, Appendix D): a comprehension test failed twice, and answering the
questions in under 30 seconds — both exclude the whole participant, as the paper did.

Tests (all from scipy.stats / statsmodels; none written here), chosen as the paper did:
- per condition, Shapiro–Wilk on the per-participant accuracies (is a rank test needed?);
- Kruskal–Wallis on the accuracies across conditions;
- Mann–Whitney U (Wilcoxon rank-sum) of each condition against the baseline condition
  (every pair if there is none), Bonferroni-corrected over these comparisons as
  pre-registered, with effect size r;
- per attribute, Fisher's exact test of correct/incorrect of each condition against the
  baseline (between subjects, so not McNemar); the paper does not name this test;
- Holm–Bonferroni over Kruskal–Wallis, the Mann–Whitney tests and the per-attribute tests
  together, as the paper's footnote 1 did ("corrected for eight tests");
- within each condition, two-sided exact McNemar of the reference attribute (legs, the
  class-defining one) against every other attribute on the same participants, as in the
  paper's first study, Holm-corrected within the condition.
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
