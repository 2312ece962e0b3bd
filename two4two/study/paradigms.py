"""Study paradigms: what a participant does per trial in each study the seed papers ran.

The 2022 study (Sixt et al.) is `attribute_relevance`: one explanation, then five questions.
The other three are trial paradigms, run by the same app from a bundle's list of trials:

- `progressive_reveal` (Biessmann & Refiano 2021): one image and one attribution method per
  trial, shown with its top p % pixels at 10 levels, always in increasing order; at each level
  the participant answers Peeky, Stretchy or "I don't know".
- `accept_reject` (Nguyen et al. 2021): the image, the model's label and confidence, and the
  condition's explanation (none, an attribution map, the 3 nearest training images); the
  participant says whether the prediction is correct.
- `guess_output` (Shen & Huang 2020, two classes): the image and its true label, with or
  without an attribution map; the participant guesses what the model predicted.

This module holds what is fixed per paradigm (response options, steps per trial, the facts a
trial must carry for the analysis) and the per-participant draw of trials. It imports nothing
of the bundle, so both the bundle reader and the storage use it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

ATTRIBUTE_RELEVANCE = "attribute_relevance"
PROGRESSIVE_REVEAL = "progressive_reveal"
ACCEPT_REJECT = "accept_reject"
GUESS_OUTPUT = "guess_output"

PEEKY, STRETCHY, DONT_KNOW = "Peeky", "Stretchy", "I don't know"
YES, NO = "Yes", "No"
CLASS_NAMES = (PEEKY, STRETCHY)  # label 0, label 1
from two4two.explain.faithfulness import REVEAL_LEVELS  # noqa: E402  (% of pixels shown, Biessmann & Refiano 2021)


@dataclass(frozen=True)
class Paradigm:
    """What every trial of a paradigm has: its steps, response options and facts for the analysis."""

    name: str
    title: str
    choices: tuple[str, ...]
    steps: int  # steps per trial
    trial_facts: tuple[str, ...]  # keys each trial's `info` must have
    step_facts: tuple[str, ...] = ()  # keys each step's `info` must have
    ordered_step_fact: str | None = None  # a step fact that must increase along the trial


PARADIGMS: dict[str, Paradigm] = {
    p.name: p
    for p in (
        Paradigm(PROGRESSIVE_REVEAL, "progressive reveal", (PEEKY, STRETCHY, DONT_KNOW), len(REVEAL_LEVELS),
                 ("method", "label"), ("level",), "level"),
        Paradigm(ACCEPT_REJECT, "accept or reject", (YES, NO), 1, ("label", "predicted", "confidence", "bin")),
        Paradigm(GUESS_OUTPUT, "guess the model's output", (PEEKY, STRETCHY), 1, ("label", "predicted")),
    )
}
PARADIGM_NAMES = (ATTRIBUTE_RELEVANCE, *PARADIGMS)
# The columns of a trial responses export before the trials' and steps' facts; no fact may take their names.
RESPONSE_COLUMNS = ("participant_id", "condition", "position", "trial", "step", "step_index", "group", "item", "answer",
                    "correct_answer", "correct", "seconds", "too_fast")


# ---------------------------------------------------------------- a bundle's trials


@dataclass(frozen=True)
class TrialImage:
    image: str  # bundle-relative PNG
    caption: str


@dataclass(frozen=True)
class TrialStep:
    """One page of a trial: what is shown, what is asked, and the answer the analysis scores against."""

    id: str
    prompt: str
    text: str
    images: tuple[TrialImage, ...]
    choices: tuple[str, ...]
    correct: str
    info: Mapping[str, Any]


@dataclass(frozen=True)
class Trial:
    """A unit of the draw: all its steps are shown in order, one page each."""

    id: str
    condition: str
    group: str  # the draw counts trials per group (a method, a difficulty bin, ...)
    item: str  # the image shown; with `distinct_items` a participant sees each item once
    steps: tuple[TrialStep, ...]
    info: Mapping[str, Any]


@dataclass(frozen=True)
class Order:
    """How each participant's trials are drawn: `draw[group]` trials of each group from the
    participant's condition, least-shown first (ties at random) so trials stay balanced across
    participants; then shuffled (or kept in draw order); the steps of a trial never move."""

    draw: Mapping[str, int]
    distinct_items: bool = False
    shuffle: bool = True

    @property
    def trials_per_participant(self) -> int:
        return sum(self.draw.values())


def response_row(participant_id: str, condition: str, position: int, trial: Trial, index: int, answer: str,
                 seconds: float, too_fast_seconds: float) -> dict[str, Any]:
    """One row of a trial responses export: the RESPONSE_COLUMNS, then the trial's and the step's facts."""
    step = trial.steps[index]
    values = (participant_id, condition, position, trial.id, step.id, index, trial.group, trial.item, answer,
              step.correct, int(answer == step.correct), round(seconds, 3), int(seconds < too_fast_seconds))
    return {**dict(zip(RESPONSE_COLUMNS, values)), **trial.info, **step.info}


class DrawError(Exception):
    """No plan satisfies the order rule for this condition's trials."""


def draw_plan(trials: Sequence[Trial], order: Order, condition: str, shown: Mapping[str, int],
              rng: random.Random, attempts: int = 20) -> list[str]:
    """Trial ids for one new participant of `condition`; `shown` counts each trial's earlier draws."""
    pool = [t for t in trials if t.condition == condition]
    for _ in range(attempts):
        plan: list[Trial] = []
        items: set[str] = set()
        groups = list(order.draw)
        rng.shuffle(groups)
        for group in groups:
            candidates = [t for t in pool if t.group == group]
            rng.shuffle(candidates)
            candidates.sort(key=lambda t: shown.get(t.id, 0))  # stable: ties stay in random order
            picked = []
            for t in candidates:
                if len(picked) == order.draw[group]:
                    break
                if order.distinct_items and t.item in items:
                    continue
                picked.append(t)
                items.add(t.item)
            if len(picked) < order.draw[group]:
                break
            plan.extend(picked)
        else:
            if order.shuffle:
                rng.shuffle(plan)
            else:
                plan.sort(key=lambda t: groups.index(t.group))
            return [t.id for t in plan]
    raise DrawError(f"condition {condition!r}: cannot draw {dict(order.draw)} trials"
                    + (" with each item once" if order.distinct_items else ""))


def check_trial(paradigm: Paradigm, trial: Trial, fail: Callable[[str, Any, str], Exception]) -> None:
    """The paradigm's rules for one parsed trial; `fail(field, value, allowed)` builds the error."""
    if len(trial.steps) != paradigm.steps:
        raise fail("steps", len(trial.steps), f"{paradigm.steps} step(s) per {paradigm.name} trial")
    missing = [k for k in paradigm.trial_facts if k not in trial.info]
    if missing:
        raise fail("info", sorted(trial.info), f"an object with {', '.join(paradigm.trial_facts)}")
    previous = None
    for i, step in enumerate(trial.steps):
        if sorted(step.choices) != sorted(paradigm.choices):
            raise fail(f"steps[{i}].choices", list(step.choices), f"the {paradigm.name} answers {', '.join(paradigm.choices)}")
        missing = [k for k in paradigm.step_facts if k not in step.info]
        if missing:
            raise fail(f"steps[{i}].info", sorted(step.info), f"an object with {', '.join(paradigm.step_facts)}")
        if paradigm.ordered_step_fact:
            value = step.info[paradigm.ordered_step_fact]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or (previous is not None and value <= previous):
                raise fail(f"steps[{i}].info.{paradigm.ordered_step_fact}", value, "a number larger than the previous step's")
            previous = value
