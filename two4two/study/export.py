"""The 2022 study's bundle: for each condition (baseline, counterfactual, concepts) the explanation
participants see — 50 images each, so every condition carries the same information, as in the
paper — the five relevance questions, an answer key derived from the model's measured importance
(`two4two.study.answer_key`), tutorial texts and comprehension checks. The config's keys are
those of configs/study-cpu.yaml; `two4two.study.pipeline.export_bundle` writes the folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from two4two.io import atomic_write_json
from two4two.schema import Fields
from two4two.study.answer_key import AnswerKeyRule, derive_answer_key
from two4two.study.bundle import CONDITIONS, consent
from two4two.study.questions import QUESTIONS

COLUMNS = 5  # the quintiles; concepts: 5 kept concepts × 2 rows

INTRODUCTION = (
    "This study is about an artificial-intelligence system that tells two abstract animals apart: "
    "Peeky and Stretchy. Both are made of eight blocks: a spine and four legs.\n\n"
    "What makes an animal a Peeky or a Stretchy is the position of its legs: a Peeky pulls its outer "
    "legs in towards the body, a Stretchy stretches them out. Animals also differ in colour, in the "
    "shape of their blocks (from cubes to spheres), in the background, and in how they are rotated and "
    "bent; these may or may not matter to the system.\n\n"
    "You will see an explanation of the system and then decide, for five features, whether the system "
    "uses them to make its decision."
)

TUTORIALS = {
    "baseline": (
        "The explanation shows 50 pictures and what the system predicted for them. The pictures are "
        "sorted into five columns by how certain the system was: from \"very certain Peeky\" on the "
        "left, through \"unsure\" in the middle, to \"very certain Stretchy\" on the right. Each column "
        "holds a fifth of all predictions. Compare the columns: what changes from left to right tells "
        "you what the system pays attention to."
    ),
    "counterfactual": (
        "The explanation shows 10 rows of 5 pictures. Each row starts from one real picture, which the "
        "system changed, step by step, until its prediction moved from \"very certain Peeky\" (left) to "
        "\"very certain Stretchy\" (right). The system changes exactly what it would need to see to change "
        "its mind. Compare the pictures within a row: the features that change are the ones the system uses."
    ),
    "concepts": (
        "The explanation shows 5 concepts the system has learned, two rows of 5 pictures for each. In each "
        "picture the region where the concept was found is highlighted; the rest is dimmed. The two rows "
        "of a concept show its two extremes. Concepts are listed by how strongly they are tied to the "
        "system's decision. Look for what the highlighted regions have in common."
    ),
}

COMPREHENSION = {
    "baseline": [
        {"text": "In which column are the pictures the system was most certain show a Stretchy?",
         "choices": ["the leftmost column", "the middle column", "the rightmost column"], "answer": "the rightmost column"},
        {"text": "What does the column labelled \"unsure\" show?",
         "choices": ["pictures the system could not tell apart well", "pictures of a third animal", "pictures without a background"],
         "answer": "pictures the system could not tell apart well"},
    ],
    "counterfactual": [
        {"text": "What do the pictures in one row show?",
         "choices": ["five different animals", "one animal, changed until the system's prediction changes", "the same picture five times"],
         "answer": "one animal, changed until the system's prediction changes"},
        {"text": "On which side of a row does the system see a Peeky most clearly?",
         "choices": ["left", "right"], "answer": "left"},
    ],
    "concepts": [
        {"text": "What does the highlighted region of a picture show?",
         "choices": ["where the concept was found", "where the animal's head is", "a randomly chosen region"],
         "answer": "where the concept was found"},
        {"text": "How many rows belong to one concept?", "choices": ["one", "two", "five"], "answer": "two"},
    ],
}

TITLES = {
    "baseline": "Explanation by example predictions",
    "counterfactual": "Explanation by counterfactual pictures",
    "concepts": "Explanation by learned concepts",
}


@dataclass
class StudyConfig:
    name: str
    model: str
    data: str
    split: str = "test"
    conditions: tuple[str, ...] = CONDITIONS
    rows: int = 10
    seed: int = 0
    concepts: dict[str, int] = field(default_factory=lambda: {"images": 500, "components": 10})
    answer_key: AnswerKeyRule = field(default_factory=AnswerKeyRule)
    source: str = "<config>"


def parse_study_config(raw: Any, source: str = "<config>") -> StudyConfig:
    """A validated study config."""
    fields = Fields(raw, source, allowed=("name", "model", "data", "split", "conditions", "rows", "seed", "concepts", "answer_key"),
                    required=("name", "model", "data"), what="a mapping (a study config)")
    for key in ("name", "model", "data"):
        fields.text(key)
    conditions = fields.items("conditions", list(CONDITIONS), nonempty=True)
    fields.check(all(c in CONDITIONS for c in conditions) and len(set(conditions)) == len(conditions), "conditions",
                 f"a list of distinct names from {', '.join(CONDITIONS)}")
    fields.integer("rows", StudyConfig.rows, low=1)
    fields.integer("seed", 0, low=0)
    concepts_fields = fields.mapping("concepts", allowed=("images", "components"))
    concepts = {"images": concepts_fields.integer("images", 500, low=1),
                "components": concepts_fields.integer("components", 10, low=COLUMNS,
                                                      expected=f"an integer ≥ {COLUMNS} (the concepts shown)")}
    return StudyConfig(
        name=raw["name"], model=raw["model"], data=raw["data"], split=str(raw.get("split", "test")),
        conditions=tuple(conditions), rows=raw.get("rows", 10), seed=raw.get("seed", 0), concepts=concepts,
        answer_key=AnswerKeyRule.from_mapping(raw.get("answer_key"), source), source=source,
    )


def build_attribute_relevance(config: StudyConfig, model, split, root: Path, tutorial: list[str]) -> dict:
    """The answer key (from the model's measured importance, on every measured attribute's
    intervention split), each condition's stimulus; returns the manifest's study-specific part."""
    from two4two.importance import Importance
    from two4two.parameters import MEASURED_ATTRIBUTES

    importance = Importance(model, list(MEASURED_ATTRIBUTES), model_name=Path(config.model).name).evaluate(split, seed=config.seed)
    key = derive_answer_key(importance, config.answer_key)
    importance.write(root / "importance")
    atomic_write_json(root / "answer_key.json", key.to_dict())
    stimuli = {c: _make_stimulus(c, model, config, split, root / "stimuli" / f"{c}.png") for c in config.conditions}
    return _manifest(config, key, stimuli, tutorial)


def _make_stimulus(condition: str, model, config: StudyConfig, split, path: Path) -> dict:
    """The explanation of one condition as a PNG (+ JSON sidecar); returns its manifest entry."""
    if condition == "baseline":
        from two4two.explain.baseline import Baseline

        grid = Baseline(model, rows=config.rows).explain(split, seed=config.seed)
        grid.save(path, title="The system's predictions, sorted by certainty")
        shown, caption = grid.images.shape[0] * grid.images.shape[1], "Columns: equal shares of the system's predictions, from very certain Peeky to very certain Stretchy."
    elif condition == "counterfactual":
        from two4two.explain.baseline import QUINTILE_LABELS
        from two4two.explain.counterfactual import QUINTILE_CENTRES, Counterfactuals

        grid = Counterfactuals(model, rows=config.rows, quantiles=QUINTILE_CENTRES).explain(split, seed=config.seed)
        grid.save(path, title="Each row: one picture changed until the prediction changes", column_titles=QUINTILE_LABELS)
        shown, caption = grid.images.shape[0] * grid.images.shape[1], "Left: very certain Peeky; right: very certain Stretchy."
    else:
        from two4two.explain.concepts import Concepts

        examples = max(1, config.rows // 2)  # 5 concepts × 2 rows × rows/2 images = as many images as the grids
        explanation = Concepts(model, images=config.concepts["images"], components=config.concepts["components"],
                               keep=COLUMNS, examples=examples).explain(split, seed=config.seed)
        explanation.save(path, title="Concepts the system has learned, most important first", show_r=False)
        shown, caption = int(np.prod(explanation.examples.shape[:3])), "Two rows per concept; highlighted: where the concept is found."
    return {"image": f"stimuli/{path.name}", "caption": caption, "images_shown": shown}


def _manifest(config: StudyConfig, key, stimuli: dict, tutorial: list[str]) -> dict:
    conditions = []
    for condition in config.conditions:
        comprehension = [{"id": f"{condition}_{i + 1}", **q} for i, q in enumerate(COMPREHENSION[condition])]
        conditions.append({
            "name": condition,
            "title": TITLES[condition],
            "tutorial": {"text": TUTORIALS[condition], "images": tutorial},
            "comprehension": comprehension,
            "stimulus": stimuli[condition],
        })
    questions = [
        {"attribute": q.name, "label": q.label.removeprefix("the "),
         "text": f"How relevant is {q.label} for the system?", "choices": ["relevant", "irrelevant"],
         "justification": {"required": True, "min_length": 1, "max_length": 2000}}
        for q in QUESTIONS
    ]
    return {
        "title": "Which features does the system use?",
        "consent": consent(30, "explanations of artificial-intelligence systems"),
        "introduction": {"text": INTRODUCTION, "images": tutorial},
        "conditions": conditions,
        "questions": questions,
        "answer_key": key.answers,
        "answer_key_rule": {**key.to_dict()["rule"], "threshold": key.threshold,
                            "explanation": "relevant when the lower 95 % bound of the measure exceeds the largest upper bound "
                                           "of the reference attributes (irrelevant by construction) plus the margin"},
    }
