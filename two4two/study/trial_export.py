"""Bundles of the trial paradigms, built from a model, a rendered dataset and attribution maps
(docs/guides/studies.md, "Study paradigms"; configs/study_reveal.yaml, study_accept_reject.yaml, study_guess.yaml).

- progressive_reveal: `images` images per class, each with every method in `methods`, at the
  10 reveal levels; each participant draws `draw` trials per method (default: all).
- accept_reject: `images` images per difficulty bin (easy/medium/hard × correct/wrong on the
  predicted class's probability in [0.5, 1], split at `confidence_edges`); conditions
  `confidence`, any attribution method, or `knn` (3 nearest training images of the predicted
  class in the model's penultimate features, searched in `neighbours_data`'s train split). The
  AI-alone threshold (tuned on the validation split) and the bins' shares go to `facts`.
- guess_output: `images` misclassified and as many correctly classified images (with two
  classes, misclassified ones alone would give the answer away), without (`no_map`) or with a map.

`maps: DIR` takes the maps `two4two explain attributions` saved instead of computing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields as dataclass_fields
from pathlib import Path
from typing import Any

import numpy as np

from two4two.errors import Two4TwoError
from two4two.schema import Fields
from two4two.study.bundle import consent
from two4two.study.paradigms import (
    ACCEPT_REJECT,
    CLASS_NAMES,
    DONT_KNOW,
    GUESS_OUTPUT,
    NO,
    PARADIGMS,
    PROGRESSIVE_REVEAL,
    REVEAL_LEVELS,
    YES,
)
from two4two.study.pictures import save_enlarged

NO_EXPLANATION = {ACCEPT_REJECT: "confidence", GUESS_OUTPUT: "no_map"}
KNN = "knn"
DIFFICULTIES = ("easy", "medium", "hard")
BINS = tuple(f"{d}_{r}" for d in DIFFICULTIES for r in ("correct", "wrong"))
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50 … 0.95, the paper's sweep on [0.5, 1]

INTRODUCTION = (
    "This study is about an artificial-intelligence system that tells two abstract animals apart: "
    "Peeky and Stretchy. Both are made of eight blocks: a spine and four legs. A Peeky pulls its outer "
    "legs in towards the body, a Stretchy stretches them out. Animals also differ in colour, in the shape "
    "of their blocks, in the background, and in how they are rotated and bent."
)
TASKS = {
    PROGRESSIVE_REVEAL: (
        "In each trial you see one picture, first with only a few of its pixels shown, then step by step "
        "more of them (the rest is grey). At every step, say whether the animal is a Peeky or a Stretchy, "
        "or \"I don't know\" if you cannot tell yet. A step cannot be repeated; answer as quickly as you can."
    ),
    ACCEPT_REJECT: (
        "In each trial you see a picture, the system's prediction and how confident the system is. "
        "Decide whether the prediction is correct: answer Yes to accept it, No to reject it."
    ),
    GUESS_OUTPUT: (
        "In each trial you see a picture and which animal it really shows. The system does not always get it "
        "right. Guess what the system predicted for this picture."
    ),
}
TITLES = {PROGRESSIVE_REVEAL: "Which animal is it?", ACCEPT_REJECT: "Is the system right?", GUESS_OUTPUT: "What did the system predict?"}
CONDITION_TEXT = {
    "confidence": "You see the system's prediction and its confidence only.",
    "no_map": "You see the picture and its true label only.",
    KNN: "Beside the picture you see the three training pictures of the predicted animal that the system finds "
         "most similar to it.",
}
MAP_TEXT = ("Beside the picture you see where the system looked ({method}): the warmer the colour, the more that "
            "region speaks for the animal the system predicted.")
COMPREHENSION = {
    PROGRESSIVE_REVEAL: ("What can you answer when you cannot tell the animal yet?", ["I don't know", "Peeky"], "I don't know"),
    ACCEPT_REJECT: ("What do you answer when you think the system's prediction is wrong?", ["No", "Yes"], "No"),
    GUESS_OUTPUT: ("What do you guess in each trial?", ["what the system predicted", "what the animal really is"],
                   "what the system predicted"),
}


@dataclass
class TrialStudyConfig:
    name: str
    paradigm: str
    model: str
    data: str
    split: str = "test"
    methods: tuple[str, ...] = ()  # progressive reveal: the methods compared
    conditions: tuple[str, ...] = ()  # accept/guess: no explanation, methods, knn
    images: int = 5
    draw: dict[str, int] = field(default_factory=dict)
    confidence_edges: tuple[float, float] = (0.7, 0.9)
    too_fast_seconds: float = 0.3
    neighbours_pool: int = 5000
    neighbours_data: str | None = None  # dataset whose train split 3-NN searches (default: data)
    maps: str | None = None  # maps of `two4two explain attributions` to use (default: computed here)
    seed: int = 0
    source: str = "<config>"

    @property
    def map_methods(self) -> tuple[str, ...]:
        if self.paradigm == PROGRESSIVE_REVEAL:
            return self.methods
        return tuple(c for c in self.conditions if c not in (NO_EXPLANATION[self.paradigm], KNN))


TRIAL_KEYS = {f.name for f in dataclass_fields(TrialStudyConfig)} - {"source"}  # a config's keys


def parse_trial_config(raw: dict, source: str = "<config>") -> TrialStudyConfig:
    """A validated trial-paradigm study config (`paradigm` names one of the trial paradigms)."""
    from two4two.explain.attribution import METHODS

    fields = Fields(raw, source, allowed=sorted(TRIAL_KEYS), required=("paradigm", "name", "model", "data"))
    paradigm = fields.choice("paradigm", PARADIGMS)
    for key in ("name", "model", "data"):
        fields.text(key)
    methods, conditions = raw.get("methods", []), raw.get("conditions", [])
    if paradigm == PROGRESSIVE_REVEAL:
        if "conditions" in raw:
            raise fields.error("conditions", conditions,
                               "nothing: progressive reveal compares `methods` within participants")
        if not isinstance(methods, list) or not methods or len(set(methods)) < len(methods) or any(m not in METHODS for m in methods):
            raise fields.error("methods", methods, f"a list of distinct attribution methods from {', '.join(METHODS)}")
    else:
        if "methods" in raw:
            raise fields.error("methods", methods, "nothing: list the map methods under `conditions`")
        allowed = (NO_EXPLANATION[paradigm], *METHODS) + ((KNN,) if paradigm == ACCEPT_REJECT else ())
        if not isinstance(conditions, list) or len(conditions) < 2 or len(set(conditions)) < len(conditions) \
                or any(c not in allowed for c in conditions):
            raise fields.error("conditions", conditions, f"at least two distinct of {', '.join(allowed)}")
    values = {key: fields.integer(key, getattr(TrialStudyConfig, key), low=low)
              for key, low in {"images": 1, "seed": 0, "neighbours_pool": 10}.items()}
    edges = raw.get("confidence_edges", [0.7, 0.9])
    if not isinstance(edges, list) or len(edges) != 2 or any(isinstance(e, bool) or not isinstance(e, (int, float)) for e in edges) \
            or not 0.5 < edges[0] < edges[1] < 1:
        raise fields.error("confidence_edges", edges, "two numbers 0.5 < low < high < 1")
    too_fast = fields.number("too_fast_seconds", 0.3, low=0, expected="seconds ≥ 0 and < 60")
    fields.check(too_fast < 60, "too_fast_seconds", "seconds ≥ 0 and < 60")
    for key in ("neighbours_data", "maps"):
        fields.check(raw.get(key) is None or (isinstance(raw[key], str) and bool(raw[key])), key, "a directory")
    draw = raw.get("draw", {})
    if not isinstance(draw, dict) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in draw.values()):
        raise fields.error("draw", draw, "a mapping group → trials per participant (integers ≥ 1)")
    return TrialStudyConfig(
        name=raw["name"], paradigm=paradigm, model=raw["model"], data=raw["data"], split=str(raw.get("split", "test")),
        methods=tuple(methods), conditions=tuple(conditions), draw=dict(draw), confidence_edges=(float(edges[0]), float(edges[1])),
        too_fast_seconds=float(too_fast), neighbours_data=raw.get("neighbours_data"), maps=raw.get("maps"), source=source, **values,
    )


# ---------------------------------------------------------------- difficulty and the AI alone


def confidence_bins(logits: np.ndarray, labels: np.ndarray, edges: tuple[float, float]) -> np.ndarray:
    """Each image's bin (BINS) from the model's prediction and its confidence (the predicted class's probability)."""
    p = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
    confidence = np.maximum(p, 1 - p)
    right = (p > 0.5).astype(int) == np.asarray(labels)
    level = np.where(confidence < edges[0], 0, np.where(confidence < edges[1], 1, 2))  # low, medium, high
    difficulty = np.where(level == 1, 1, np.where(right == (level == 2), 0, 2))  # easy 0, medium 1, hard 2
    return np.array([f"{DIFFICULTIES[d]}_{'correct' if r else 'wrong'}" for d, r in zip(difficulty, right)])


def ai_alone(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The confidence threshold T* (swept over 0.50 … 0.95) that best decides "accept the prediction
    if its confidence ≥ T", and that rule's accuracy, on these images (the paper: the validation set)."""
    p = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
    confidence, right = np.maximum(p, 1 - p), (p > 0.5).astype(int) == np.asarray(labels)
    scores = [float(np.mean((confidence >= t) == right)) for t in THRESHOLDS]
    best = int(np.argmax(scores))
    return THRESHOLDS[best], scores[best]


# ---------------------------------------------------------------- export


def build_trials(config: TrialStudyConfig, model, split, root: Path, tutorial: list[str], progress: bool) -> dict[str, Any]:
    """The paradigm's trials and pictures; returns the manifest's paradigm-specific part."""
    builder = {PROGRESSIVE_REVEAL: _reveal_trials, ACCEPT_REJECT: _accept_trials, GUESS_OUTPUT: _guess_trials}[config.paradigm]
    trials, draw, facts = builder(config, model, split, root, progress)
    return _manifest(config, trials, {**draw, **config.draw}, facts, tutorial)


def _maps(config: TrialStudyConfig, model, split, indices: np.ndarray, methods, progress: bool) -> dict[str, np.ndarray]:
    """Each method's map of the chosen images, explaining the model's predicted class: computed here,
    or taken from the maps `two4two explain attributions` saved (`maps:`), which must explain the same."""
    from two4two.explain.attribution import attribution_method, load_maps

    logits = split.logits(model)[indices]
    targets = (logits > 0).astype(np.int64)
    if config.maps:
        saved = load_maps(config.maps)
        where = {pid: j for j, pid in enumerate(saved.ids)}
        ids = [split.params[i].id for i in indices]
        missing = [m for m in methods if m not in saved.maps] or [pid for pid in ids if pid not in where]
        if missing:
            raise Two4TwoError(f"maps: {config.maps} has no {missing[0]!r} (methods {', '.join(saved.maps)}, {len(saved.ids)} images); "
                               "explain the split's images with these methods, or drop `maps` to compute them here")
        rows = np.array([where[pid] for pid in ids])
        if not np.array_equal(saved.targets[rows], targets):
            raise Two4TwoError(f"maps: {config.maps} explains other classes than {config.model} predicts (another model?)")
        return {m: saved.maps[m][rows] for m in methods}
    images, masks = split.images[indices], split.masks[indices]
    return {m: attribution_method(m, model, progress=progress, seed=config.seed).attribute(images, targets, masks) for m in methods}


def _pick(rng: np.random.Generator, candidates: np.ndarray, n: int, what: str) -> np.ndarray:
    if len(candidates) < n:
        raise Two4TwoError(f"images: {n} {what} are needed, the split has {len(candidates)}; lower `images`")
    return np.sort(rng.choice(candidates, n, replace=False))


def _reveal_trials(config, model, split, root: Path, progress: bool):
    from two4two.explain.faithfulness import pixel_order, removal_masks

    rng = np.random.default_rng(config.seed)
    labels = split.true_labels
    chosen = np.concatenate([_pick(rng, np.flatnonzero(labels == c), config.images, f"images of class {c}") for c in (0, 1)])
    maps = _maps(config, model, split, chosen, config.methods, progress)
    images = split.images[chosen]
    trials = []
    for m, method in enumerate(config.methods):
        order = pixel_order(maps[method], seed=config.seed)
        shown = {level: removal_masks(order, images.shape[1:3], level, most_relevant=True) for level in REVEAL_LEVELS}
        for i, index in enumerate(chosen):
            pid, label = split.params[index].id, CLASS_NAMES[labels[index]]
            steps = []
            for level in REVEAL_LEVELS:
                picture = np.where(shown[level][i][..., None], images[i], 128).astype(np.uint8)
                path = save_enlarged(picture, root / "pictures" / f"{pid}_{method}_{level:02d}.png")
                steps.append({"id": f"L{level}", "prompt": "Which animal is this?", "text": f"{level} % of the picture is shown.",
                              "images": [{"image": path}], "choices": [CLASS_NAMES[0], CLASS_NAMES[1], DONT_KNOW],
                              "correct": label, "info": {"level": level}})
            trials.append({"id": f"{method}-{pid}", "condition": "reveal", "group": method, "item": pid, "steps": steps,
                           "info": {"method": method, "label": label, "image_id": pid}})
    draw = {method: 2 * config.images for method in config.methods}  # all, as in the paper
    return trials, draw, {"methods": list(config.methods), "conditions": {"reveal": "progressive reveal"}}


def _explanations(config, model, split, chosen: np.ndarray, root: Path, progress: bool) -> dict[str, list[list[dict]]]:
    """Per condition, per chosen image: the pictures shown beside it (maps as overlays, 3-NN images)."""
    from two4two.explain.attribution import LABELS, heatmap_overlay

    out: dict[str, list[list[dict]]] = {}
    maps = _maps(config, model, split, chosen, config.map_methods, progress)
    for method, m in maps.items():
        overlays = heatmap_overlay(split.images[chosen], m)
        out[method] = [[{"image": save_enlarged(o, root / "pictures" / f"{split.params[i].id}_{method}.png"),
                         "caption": f"Where the system looked ({LABELS[method]})"}] for o, i in zip(overlays, chosen)]
    if KNN in config.conditions:
        from two4two.explain.neighbours import NearestTraining, penultimate_features
        from two4two.split import Split

        train = Split(config.neighbours_data or config.data, "train", progress=progress)
        pool = NearestTraining.of(model, train, config.neighbours_pool, seed=config.seed, progress=progress)
        predicted = (split.logits(model)[chosen] > 0).astype(int)
        nearest = pool.query(penultimate_features(model, split.images[chosen]), predicted, k=3)
        out[KNN] = [[{"image": save_enlarged(train.images[j], root / "pictures" / f"train_{train.params[j].id}.png"),
                      "caption": f"Similar training picture {r + 1} (a {CLASS_NAMES[c]})"} for r, j in enumerate(row)]
                    for row, c in zip(nearest, predicted)]
    return out


def _accept_trials(config, model, split, root: Path, progress: bool):
    from two4two.split import Split

    rng = np.random.default_rng(config.seed)
    logits, labels = split.logits(model), split.true_labels
    bins = confidence_bins(logits, labels, config.confidence_edges)
    chosen = np.concatenate([_pick(rng, np.flatnonzero(bins == b), config.images, f"images in bin {b}") for b in BINS])
    extras = _explanations(config, model, split, chosen, root, progress)
    validation = Split(config.data, "validation", progress=progress)
    threshold, validation_accuracy = ai_alone(validation.logits(model), validation.true_labels)
    p = 1 / (1 + np.exp(-logits))
    confidence = np.maximum(p, 1 - p)
    right = (p > 0.5).astype(int) == labels
    trials = []
    for k, index in enumerate(chosen):
        pid, predicted = split.params[index].id, CLASS_NAMES[int(p[index] > 0.5)]
        picture = save_enlarged(split.images[index], root / "pictures" / f"{pid}.png")
        for condition in config.conditions:
            images = [{"image": picture, "caption": "The picture"}] + extras.get(condition, [[]] * len(chosen))[k]
            step = {"id": "decide", "prompt": "Is the system's prediction correct?",
                    "text": f"The system says: {predicted} ({confidence[index]:.0%} confident).", "images": images,
                    "choices": [YES, NO], "correct": YES if right[index] else NO}
            trials.append({"id": f"{condition}-{pid}", "condition": condition, "group": str(bins[index]), "item": pid,
                           "steps": [step], "info": {"label": CLASS_NAMES[labels[index]], "predicted": predicted,
                                                     "confidence": round(float(confidence[index]), 4), "bin": str(bins[index]),
                                                     "ai_correct": bool(right[index]), "image_id": pid}})
    shares = {b: round(float(np.mean(bins == b)), 5) for b in BINS}
    ai_on_trials = {b: float(np.mean((confidence[chosen][bins[chosen] == b] >= threshold) == right[chosen][bins[chosen] == b]))
                    for b in BINS}
    facts = {"conditions": list(config.conditions), "bin_shares": shares, "confidence_edges": list(config.confidence_edges),
             "ai_alone": {"threshold": threshold, "validation_accuracy": round(validation_accuracy, 5),
                          "test_accuracy": round(float(np.mean((confidence >= threshold) == right)), 5),
                          "per_bin": {b: round(v, 5) for b, v in ai_on_trials.items()}}}
    return trials, {b: max(1, config.images // 2) for b in BINS}, facts


def _guess_trials(config, model, split, root: Path, progress: bool):
    rng = np.random.default_rng(config.seed)
    logits, labels = split.logits(model), split.true_labels
    predicted = (logits > 0).astype(int)
    wrong = _pick(rng, np.flatnonzero(predicted != labels), config.images, "misclassified images")
    right = _pick(rng, np.flatnonzero(predicted == labels), config.images, "correctly classified images")
    chosen = np.concatenate([wrong, right])
    extras = _explanations(config, model, split, chosen, root, progress)
    trials = []
    for k, index in enumerate(chosen):
        pid, label = split.params[index].id, CLASS_NAMES[labels[index]]
        picture = save_enlarged(split.images[index], root / "pictures" / f"{pid}.png")
        group = "correct" if predicted[index] == labels[index] else "misclassified"
        for condition in config.conditions:
            images = [{"image": picture, "caption": "The picture"}] + extras.get(condition, [[]] * len(chosen))[k]
            step = {"id": "guess", "prompt": "What did the system predict?", "text": f"This animal is a {label}.",
                    "images": images, "choices": list(CLASS_NAMES), "correct": CLASS_NAMES[predicted[index]]}
            trials.append({"id": f"{condition}-{pid}", "condition": condition, "group": group, "item": pid, "steps": [step],
                           "info": {"label": label, "predicted": CLASS_NAMES[predicted[index]], "image_id": pid}})
    share = float(np.mean(predicted != labels))
    draw = {"misclassified": max(1, config.images // 2), "correct": max(1, config.images // 2)}
    return trials, draw, {"conditions": list(config.conditions), "misclassified_share_in_split": round(share, 5)}


def _manifest(config: TrialStudyConfig, trials: list[dict], draw: dict, facts: dict, tutorial: list[str]) -> dict[str, Any]:
    from two4two.explain.attribution import LABELS

    paradigm = config.paradigm
    names = ["reveal"] if paradigm == PROGRESSIVE_REVEAL else list(config.conditions)
    question, choices, answer = COMPREHENSION[paradigm]
    conditions = []
    for name in names:
        condition_text = CONDITION_TEXT.get(name) or (MAP_TEXT.format(method=LABELS[name]) if name in LABELS else "")
        conditions.append({
            "name": name,
            "title": TITLES[paradigm],  # participants never see a condition's internal name
            "tutorial": {"text": TASKS[paradigm] + ("\n\n" + condition_text if condition_text else ""),
                         "images": tutorial},
            "comprehension": [{"id": f"{paradigm}_1", "text": question, "choices": choices, "answer": answer}],
        })
    return {
        "paradigm": paradigm,
        "title": TITLES[paradigm],
        "consent": consent(10, "artificial-intelligence systems"),
        "introduction": {"text": INTRODUCTION, "images": tutorial},
        "conditions": conditions,
        "trials": trials,
        "order": {"draw": draw, "distinct_items": paradigm != PROGRESSIVE_REVEAL, "shuffle": True},
        "timing": {"too_fast_seconds": config.too_fast_seconds},
        "facts": {"name": config.name, "seed": config.seed, **facts},
    }
