"""What the explorer shows, computed on demand and cached: one model, one split, its maps.

Everything the page asks for is a pure function of (image, method, order, percentage), so it
is cached and the same request always gives the same bytes. The images the slider shows are
the 8-bit images the model is asked about: the probability beside a perturbed image is the
model's on exactly that image (ROAD's imputation, quantised to what the PNG holds).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from two4two.animal import BLOCK_GROUPS
from two4two.dataset.writer import png_bytes as png
from two4two.errors import Two4TwoError
from two4two.explain.attribution import LABELS, attribution_method, check_methods, load_maps
from two4two.explain.faithfulness import DEFAULT_PERCENTAGES, impute, pixel_order, removal_masks, true_class_probability
from two4two.importance import available_interventions
from two4two.layout import has_split, removal_split
from two4two.parameters import ATTRIBUTES
from two4two.split import Split

ON_DEMAND = ("gradient", "input_x_gradient", "integrated_gradients", "smoothgrad", "grad_cam", "occlusion",
             "random", "sobel", "silhouette")  # without --maps: cheap enough to compute for one image on a click
CLASSES = ("peaky", "stretchy")
MASK_COLOURS = np.array([[235, 235, 235], [31, 119, 180], [174, 199, 232], [255, 127, 14], [255, 187, 120],
                         [44, 160, 44], [152, 223, 138], [214, 39, 40], [255, 152, 150]], np.uint8)


class BadRequest(Two4TwoError, ValueError):
    """A request names something that is not there: the page gets a 400 with this message."""


def map_rgba(a: np.ndarray) -> np.ndarray:
    """A signed map as RGBA: red for the explained class, blue against, transparent where it is 0."""
    limit = float(np.abs(a).max()) or 1.0
    v = np.clip(a / limit, -1, 1)
    rgba = np.zeros((*a.shape, 4), np.uint8)
    rgba[..., 0] = np.where(v > 0, 220, 30)
    rgba[..., 1] = 40
    rgba[..., 2] = np.where(v > 0, 30, 220)
    rgba[..., 3] = (np.abs(v) * 255).round().astype(np.uint8)
    return rgba


class ExplorerSession:
    """The model's answers, maps, ROAD curves and ground truth of one split's images."""

    def __init__(self, model, split: Split, maps_dir: str | Path | None = None, percentages=DEFAULT_PERCENTAGES, seed: int = 0):
        self.model, self.split, self.seed = model, split, seed
        self.percentages = tuple(percentages)
        self.lock = threading.Lock()  # captum's hooks and one model: one computation at a time
        self.params = split.params
        self.images = split.images
        self.masks = split.masks
        self.logits = split.logits(model)
        self.labels = split.true_labels
        if maps_dir is not None:
            loaded = load_maps(maps_dir)
            if [p.id for p in self.params[: len(loaded.ids)]] != list(loaded.ids):
                raise Two4TwoError(f"{maps_dir}: the maps are not of the first images of {split!r}")
            self.stored_maps, self.targets = loaded.maps, loaded.targets
            self.n = len(loaded.ids)
            self.methods = list(loaded.maps)
        else:
            self.stored_maps, self.targets = {}, (self.logits > 0).astype(np.int64)
            self.n = len(self.params)
            self.methods = list(ON_DEMAND)
        self.interventions = available_interventions(split.root, split.name)
        self.removals = [g for g in BLOCK_GROUPS if has_split(split.root, removal_split(split.name, g))]
        self._by_original: dict[str, dict[str, int]] = {}  # split name → original id → row
        self.perturbed = lru_cache(maxsize=4096)(self.perturbed)
        self.attribution = lru_cache(maxsize=1024)(self.attribution)

    # -- checks: every request goes through these, so a bad one is a message, not a traceback --

    def index(self, raw) -> int:
        return _whole(raw, "image", f"an index 0 … {self.n - 1}", self.n - 1)

    def method(self, raw) -> str:
        if raw not in self.methods:
            raise BadRequest(f"method: expected one of {', '.join(self.methods)}, got {str(raw)[:40]!r}")
        return raw

    @staticmethod
    def percent(raw) -> int:
        return _whole(raw, "p", "a whole percentage 0 … 99", 99)

    @staticmethod
    def order(raw) -> str:
        if raw not in ("morf", "lerf"):
            raise BadRequest(f"order: expected morf or lerf, got {str(raw)[:40]!r}")
        return raw

    # -- what the page shows -------------------------------------------------------

    def probability(self, logit: float, i: int) -> float:
        return float(true_class_probability(np.array([logit]), self.labels[i : i + 1])[0])

    def listing(self, label: str = "any", correct: str = "any", min_logit=None, max_logit=None) -> list[dict]:
        if label not in ("any", *CLASSES):
            raise BadRequest(f"label: expected any, peaky or stretchy, got {str(label)[:40]!r}")
        if correct not in ("any", "yes", "no"):
            raise BadRequest(f"correct: expected any, yes or no, got {str(correct)[:40]!r}")
        bounds = []
        for name, raw in (("min_logit", min_logit), ("max_logit", max_logit)):
            try:
                bounds.append(None if raw in (None, "") else float(raw))
            except ValueError:
                raise BadRequest(f"{name}: expected a number, got {str(raw)[:40]!r}") from None
            if bounds[-1] is not None and not np.isfinite(bounds[-1]):
                raise BadRequest(f"{name}: expected a finite number, got {raw!r}")
        out = []
        for i in range(self.n):
            predicted = int(self.logits[i] > 0)
            entry = {"index": i, "id": self.params[i].id, "label": CLASSES[self.labels[i]], "predicted": CLASSES[predicted],
                     "correct": bool(predicted == self.labels[i]), "logit": round(float(self.logits[i]), 4)}
            if label != "any" and entry["label"] != label:
                continue
            if correct != "any" and entry["correct"] != (correct == "yes"):
                continue
            if bounds[0] is not None and self.logits[i] < bounds[0] or bounds[1] is not None and self.logits[i] > bounds[1]:
                continue
            out.append(entry)
        return out

    def details(self, i: int) -> dict:
        p = self.params[i]
        logit = float(self.logits[i])
        out = {"index": i, "id": p.id, "label": CLASSES[self.labels[i]], "predicted": CLASSES[int(logit > 0)], "logit": logit,
               "probability_true_class": self.probability(logit, i), "probability_stretchy": float(1 / (1 + np.exp(-logit))),
               "explained_class": CLASSES[int(self.targets[i])], "methods": [{"name": m, "label": LABELS[m]} for m in self.methods],
               "interventions": [], "removals": []}
        for attribute in self.interventions:
            pair = self._counterpart(self.split.intervention(attribute), i)
            if pair is not None:
                j, other, change = pair
                out["interventions"].append({
                    "attribute": attribute, "label": ATTRIBUTES[attribute].label, "before": _value(getattr(p, attribute)),
                    "after": _value(getattr(other.params[j], attribute)), **change, "url": f"/intervention/{attribute}/{i}.png"})
        for group in self.removals:
            pair = self._counterpart(self.split.removal(group), i)
            if pair is not None:
                out["removals"].append({"part": group, "label": group.replace("_", " "), **pair[2], "url": f"/removal/{group}/{i}.png"})
        return out

    def _counterpart(self, other: Split, i: int):
        """(row, split, {logit, delta_logit, flips}) of image i's re-rendered copy in `other`, or None."""
        j = self._original_index(other, self.params[i].id)
        if j is None:
            return None
        new, old = float(other.logits(self.model)[j]), float(self.logits[i])
        return j, other, {"logit": new, "delta_logit": new - old, "flips": (new > 0) != (old > 0)}

    def _original_index(self, other: Split, original_id: str) -> int | None:
        if other.name not in self._by_original:
            self._by_original[other.name] = {q.original_id: k for k, q in enumerate(other.params)}
        return self._by_original[other.name].get(original_id)

    def ground_truth_image(self, kind: str, name: str, i: int) -> bytes:
        field, names, split_of = (("attribute", self.interventions, self.split.intervention) if kind == "intervention"
                                  else ("part", self.removals, self.split.removal))
        if name not in names:
            allowed = ", ".join(names) or f"none (no {kind} splits)"
            raise BadRequest(f"{field}: expected one of {allowed}, got {name[:40]!r}")
        other = split_of(name)
        j = self._original_index(other, self.params[i].id)
        if j is None:
            raise BadRequest(f"image {i} has no {kind} {name!r}")
        return png(other.images[j])

    def mask_png(self, i: int) -> bytes:
        return png(MASK_COLOURS[self.masks[i]])

    def attribution(self, method: str, i: int) -> np.ndarray:
        if method in self.stored_maps:
            return self.stored_maps[method][i]
        check_methods([method])
        with self.lock:
            return attribution_method(method, self.model, seed=self.seed).attribute(
                self.images[i : i + 1], int(self.targets[i]), self.masks[i : i + 1])[0]

    def map_png(self, method: str, i: int) -> bytes:
        return png(map_rgba(self.attribution(method, i)))

    def perturbed(self, method: str, i: int, order: str, p: int) -> tuple[np.ndarray, float]:
        """The image with the p % most (MoRF) or least (LeRF) relevant pixels ROAD-imputed, and the
        model's probability of the true class on exactly that 8-bit image."""
        if p == 0:
            image = self.images[i]
        else:
            ranking = pixel_order(self.attribution(method, i)[None], self.seed + i)
            removed = removal_masks(ranking, self.images.shape[1:3], p, most_relevant=(order == "morf"))
            filled = impute(self.images[i : i + 1], removed, "linear", rng=(self.seed, i, p, int(order == "morf")))
            image = (filled[0] * 255).round().astype(np.uint8)
        from two4two.models.training import predict_logits

        with self.lock:
            logit = float(predict_logits(self.model, image[None])[0])
        return image, self.probability(logit, i)

    def curves(self, method: str, i: int) -> dict:
        """MoRF and LeRF: the true-class probability at each percentage (0 = the original)."""
        ps = [0, *[int(p) for p in self.percentages]]
        return {"percentages": ps, "morf": [self.perturbed(method, i, "morf", p)[1] for p in ps],
                "lerf": [self.perturbed(method, i, "lerf", p)[1] for p in ps]}


def _whole(raw, name: str, expected: str, high: int) -> int:
    """An integer request field in [0, high]; anything else is a BadRequest saying what is allowed."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{name}: expected {expected}, got {str(raw)[:40]!r}") from None
    if not 0 <= value <= high:
        raise BadRequest(f"{name}: expected {expected}, got {value}")
    return value


def _value(v):
    return round(float(v), 4) if isinstance(v, (int, float, np.floating)) else v
