"""Synthetic responses with planted effects, in the study app's format, to try the analysis."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from two4two.errors import Two4TwoError
from two4two.study.questions import BY_NAME
from two4two.study.responses import ANSWERS, ATTRIBUTES, Response

# The paper's Table 2 (study 2), percent correct per attribute; used to simulate plausible answers.
PAPER_ACCURACY = {
    "baseline": {"legs": 85.9, "colour": 59.2, "background": 95.8, "shape": 93.0, "rotation_bending": 70.4},
    "counterfactual": {"legs": 100.0, "colour": 82.3, "background": 79.0, "shape": 90.3, "rotation_bending": 71.0},
    "concepts": {"legs": 45.8, "colour": 32.2, "background": 18.6, "shape": 32.2, "rotation_bending": 32.2},
}


def simulate_responses(
    n_per_condition: int = 30,
    seed: int = 0,
    accuracy: Mapping[str, Mapping[str, float]] = PAPER_ACCURACY,
    comprehension_failure_rate: float = 0.1,
    rusher_rate: float = 0.05,
    answer_key: Mapping[str, str] | None = None,
) -> list[Response]:
    """Synthetic responses in the study app's format, to try the analysis.

    Each participant answers each attribute correctly with the given percentage; a share fails
    the comprehension checks twice and a share rushes through (a few seconds per page), so
    the default exclusion rules have something to exclude. `answer_key` (a bundle's) replaces
    the paper's expected answers.
    """
    if n_per_condition < 1:
        raise Two4TwoError(f"participants per condition {n_per_condition} is not allowed; expected at least 1")
    rng = np.random.default_rng(seed)
    out = []
    index = 0
    for condition, percents in accuracy.items():
        for _ in range(n_per_condition):
            index += 1
            pid = f"P{index:04d}"
            failures = 2 if rng.random() < comprehension_failure_rate else int(rng.random() < 0.2)
            rushing = rng.random() < rusher_rate
            for a in ATTRIBUTES:
                expected = answer_key[a] if answer_key else BY_NAME[a].paper_answer
                is_correct = rng.random() < percents[a] / 100.0
                answer = expected if is_correct else ANSWERS[1 - ANSWERS.index(expected)]
                seconds = float(rng.uniform(1, 4) if rushing else rng.lognormal(math.log(40), 0.5))
                why = f'The {a} "looked {"different" if answer == "relevant" else "the same"}" across columns, so {answer}.'
                out.append(Response(pid, condition, a, answer, expected, round(seconds, 1), failures, why))
    return out
