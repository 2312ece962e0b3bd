"""Attribution maps scored against ground truth only this generator has.

Every score is computed per image from a map (N × H × W, signed) and something the
renderer knows exactly: the block masks, the same image re-rendered without a block
(part removal), the intervention pairs of `two4two.importance`, or two models whose
reliance on the background differs by construction. Each is averaged over images with
a percentile-bootstrap 95 % interval. Where a score reads "relevance" it is |map|, as the
localisation literature (and Quantus' defaults) treats signed maps.

Regions of a mask (labels 1 + index in two4two.animal.BLOCK_NAMES): `animal` (every block),
`right_legs` (the class-defining pair), `left_legs`, `spine`, `background`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from two4two.animal import BLOCK_GROUPS, BLOCK_NAMES, block_labels
from two4two.intervals import Interval, mean_interval, spearman, spearman_interval

REGIONS = ("animal", *BLOCK_GROUPS, "background")
WSL_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # Nguyen et al. 2021 sweep α over {0.05, …, 0.95}
CHANGED_PIXEL_LEVEL = 12  # 8-bit: a pixel an intervention changed differs by more than render noise (≈ 3) in a channel


def region_masks(masks: np.ndarray, region: str) -> np.ndarray:
    """Boolean N × H × W of a named region of label masks."""
    masks = np.asarray(masks)
    if region == "animal":
        return masks > 0
    if region == "background":
        return masks == 0
    if region in BLOCK_GROUPS:
        return np.isin(masks, block_labels(BLOCK_GROUPS[region]))
    if region in BLOCK_NAMES:
        return masks == block_labels([region])[0]
    raise ValueError(f"{region!r} is not a region; allowed: {', '.join((*REGIONS, *BLOCK_NAMES))}")


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(len(a), -1)


# ---- localisation against the exact masks --------------------------------------------


def pointing_game(maps: np.ndarray, regions: np.ndarray, tolerance: int = 0, seed: int = 0) -> np.ndarray:
    """1 where the map's maximum (signed: the strongest evidence for the class) lies in the region
    (or within `tolerance` pixels of it), else 0; NaN for an empty region, which has no answer.
    A maximum shared by several pixels is broken at random with `seed`, so a map that says
    nothing hits as often as the region's share of the image (not always, as a map whose tie
    counts as a hit when any tied pixel is inside; not never, as raster order would make it).

    Zhang et al. 2018, "Top-down neural attention by excitation backprop" (IJCV); they allow
    15 px on 224 px images for loose boxes, our masks are exact so the default is 0.
    """
    from scipy import ndimage

    regions = np.asarray(regions, bool)
    if tolerance:
        regions = np.stack([ndimage.binary_dilation(r, iterations=tolerance) for r in regions])
    flat, inside = _flat(maps), _flat(regions).astype(bool)
    rng = np.random.default_rng(seed)
    tied = flat == flat.max(axis=1, keepdims=True)
    peak = np.where(tied, rng.random(flat.shape), -1.0).argmax(axis=1)
    hit = inside[np.arange(len(flat)), peak].astype(np.float64)
    hit[~inside.any(axis=1)] = np.nan
    return hit


def relevance_mass_accuracy(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Share of the relevance |map| inside the region: Σ_region |a| / Σ |a|.

    Arras, Osman & Samek 2022, "CLEVR-XAI" (Information Fusion), Eq. 4 (they use the positive
    part; with |·| a signed method is not rewarded for negative evidence off the object less).
    NaN for an empty region or an all-zero map.
    """
    r = np.abs(_flat(maps))
    inside = (r * _flat(regions)).sum(axis=1)
    total = r.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inside / total
    out[~_flat(regions).any(axis=1)] = np.nan
    return out


def relevance_rank_accuracy(maps: np.ndarray, regions: np.ndarray, seed: int = 0) -> np.ndarray:
    """Of the K most relevant pixels (K = the region's size), the share inside the region.

    Arras, Osman & Samek 2022 (CLEVR-XAI), Eq. 3. Ties (a constant map) are broken at random
    with `seed`, so a map that says nothing scores the region's share of the image, not 1.
    """
    rng = np.random.default_rng(seed)
    r = np.abs(_flat(maps))
    reg = _flat(regions).astype(bool)
    out = np.full(len(r), np.nan)
    for i in range(len(r)):
        k = int(reg[i].sum())
        if k == 0:
            continue
        order = np.lexsort((rng.random(r.shape[1]), -r[i]))  # by relevance, ties at random
        out[i] = reg[i][order[:k]].mean()
    return out


def bounding_boxes(binary: np.ndarray) -> list[tuple[int, int, int, int] | None]:
    """(row0, row1, col0, col1), ends exclusive, of each image's True pixels (None if none)."""
    spans = [(np.flatnonzero(b.any(axis=1)), np.flatnonzero(b.any(axis=0))) for b in np.asarray(binary, bool)]
    return [None if not len(rows) else (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            for rows, cols in spans]


def energy_pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of the min–max normalised map's energy inside the animal's bounding box.

    Wang et al. 2020, "Score-CAM" (CVPR workshops), Sec. 4.2: the boxed share of a map scaled
    to [0, 1]; unlike relevance mass, a map's offset off the object counts against it.
    """
    flat = _flat(maps)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    boxes = bounding_boxes(np.asarray(masks) > 0)
    inside = np.zeros(np.shape(masks), bool)
    for box, m in zip(boxes, inside):
        if box is not None:
            m[box[0]:box[1], box[2]:box[3]] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (flat - low) / (high - low)
        out = (scaled * _flat(inside)).sum(axis=1) / scaled.sum(axis=1)
    out[[b is None for b in boxes]] = np.nan
    return out


def box_iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    rows = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    cols = max(0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = rows * cols
    union = (a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter
    return inter / union if union else 0.0


def wsl_ious(maps: np.ndarray, masks: np.ndarray, alpha: float) -> np.ndarray:
    """IoU of the box around the map binarised at α · max |map| with the animal's box."""
    r = np.abs(np.asarray(maps, np.float64))
    peak = r.reshape(len(r), -1).max(axis=1)[:, None, None]
    binary = (r >= alpha * peak) & (peak > 0)
    truth = bounding_boxes(np.asarray(masks) > 0)
    return np.array([box_iou(p, t) if t is not None else np.nan for p, t in zip(bounding_boxes(binary), truth)])


def wsl_localisation(maps: np.ndarray, masks: np.ndarray, thresholds: Sequence[float] = WSL_THRESHOLDS):
    """Weakly-supervised localisation: 1 where the binarised map's box overlaps the animal's box
    at IoU > 0.5, at the threshold α that is best for this method on these images.

    Nguyen, Kim & Nguyen 2021, "The effectiveness of feature attribution methods and its
    correlation with automatic evaluation scores" (NeurIPS), Sec. 2.5 (after Zhou et al. 2016,
    CAM); they sweep α ∈ {0.05, …, 0.95} per method. Returns (per-image 0/1, α).
    """
    best, best_alpha = None, thresholds[0]
    for alpha in thresholds:
        hits = (wsl_ious(maps, masks, alpha) > 0.5).astype(np.float64)
        if best is None or np.nanmean(hits) > np.nanmean(best):
            best, best_alpha = hits, alpha
    return best, best_alpha


# ---- part deletion: the image re-rendered without a block ---------------------------


def class_logit(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The explained class's logit: z for stretchy (1), −z for peaky (0)."""
    return np.where(np.asarray(targets) == 1, 1.0, -1.0) * np.asarray(logits, np.float64)


def part_masses(maps: np.ndarray, masks: np.ndarray, parts: Sequence[str]) -> np.ndarray:
    """N × parts: the signed attribution summed over each part's pixels in the original image."""
    flat = _flat(maps)
    return np.stack([(flat * _flat(region_masks(masks, p))).sum(axis=1) for p in parts], axis=1)


def single_deletion(masses: np.ndarray, drops: np.ndarray) -> np.ndarray:
    """Per image, Spearman ρ between each part's attribution and the drop of the explained
    class's logit when that part is removed (NaN where either is constant).

    Hesse, Schaub-Meyer & Roth 2023, "FunnyBirds" (ICCV), single deletion; there the parts
    are deleted in 3-D too, here they are re-rendered without the block.
    """
    from scipy import stats

    out = np.full(len(masses), np.nan)
    for i, (m, d) in enumerate(zip(masses, drops)):
        if np.ptp(m) > 0 and np.ptp(d) > 0:
            out[i] = stats.spearmanr(m, d).statistic
    return out


def background_independence(maps: np.ndarray, masks: np.ndarray, background_effect: np.ndarray, logits: np.ndarray,
                            share: float = 0.05) -> np.ndarray:
    """1 − the background's share of |map|, on images where the background does not matter:
    changing its colour (the bg_color intervention) moved the explained logit by less than
    `share` of its size; NaN elsewhere.

    After FunnyBirds' background independence (Hesse et al. 2023), which removes background
    objects; our background is one plane, so its intervention is the removal.
    """
    irrelevant = np.abs(background_effect) < share * np.abs(logits)
    out = 1.0 - relevance_mass_accuracy(maps, region_masks(masks, "background"))
    out[~irrelevant] = np.nan
    return out


# ---- attribute level: where an intervention changed the image ---------------------


def changed_pixels(images: np.ndarray, new_images: np.ndarray, masks=None, new_masks=None) -> np.ndarray:
    """Pixels an intervention changed: a channel moved by more than CHANGED_PIXEL_LEVEL, or the label changed."""
    changed = (np.abs(images.astype(np.int16) - new_images.astype(np.int16)) > CHANGED_PIXEL_LEVEL).any(axis=-1)
    if masks is not None and new_masks is not None:
        changed |= np.asarray(masks) != np.asarray(new_masks)
    return changed


def changed_mass(maps: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """Σ |a| over the changed pixels: how much of the map points where the change happened."""
    return (np.abs(_flat(maps)) * _flat(changed)).sum(axis=1)


# ---- sanity checks ------------------------------------------------------------------


def map_similarity(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean over images of `map_similarities`."""
    return {k: float(np.nanmean(v)) for k, v in map_similarities(a, b).items()}


def map_similarities(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Per image, Spearman ρ (signed and of |·|) and SSIM between two sets of maps.

    Adebayo et al. 2018, "Sanity checks for saliency maps" (NeurIPS), Sec. 3: SSIM on maps
    scaled to [0, 1] (here by their joint range per image, so identical maps give 1).
    """
    from skimage.metrics import structural_similarity

    signed, absolute, ssim = [], [], []
    for x, y in zip(np.asarray(a, np.float64), np.asarray(b, np.float64)):
        same = np.array_equal(x, y)
        signed.append(1.0 if same else spearman(x.ravel(), y.ravel()))
        absolute.append(1.0 if same else spearman(np.abs(x).ravel(), np.abs(y).ravel()))
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        span = high - low
        ssim.append(1.0 if span == 0 else
                    float(structural_similarity((x - low) / span, (y - low) / span, data_range=1.0, win_size=7)))
    return {"spearman": np.array(signed), "spearman_abs": np.array(absolute), "ssim": np.array(ssim)}


def cascading_randomisation(model, method_name: str, images: np.ndarray, targets: np.ndarray, masks: np.ndarray,
                            seed: int = 0, **options) -> list[dict]:
    """The method's maps after re-initialising the model's blocks one by one from the output down,
    each compared with the trained model's maps (`map_similarity`); one record per step."""
    from two4two.explain.attribution import attribution_method, cascade_layers, randomised

    original = attribution_method(method_name, model, seed=seed, **options).attribute(images, targets, masks)
    names = [name for name, _ in cascade_layers(model)]
    records = []
    for k in range(1, len(names) + 1):
        maps = attribution_method(method_name, randomised(model, k, seed), seed=seed, **options).attribute(images, targets, masks)
        per_image = map_similarities(original, maps)
        records.append({"method": method_name, "layers": k, "randomised_down_to": names[k - 1],
                        **{key: float(np.nanmean(v)) for key, v in per_image.items()},
                        "per_image_spearman_abs": per_image["spearman_abs"].tolist()})
    return records


def removal_drops(model, removals: dict, ids: Sequence, explained: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per removed part, how much the explained class's logit (`explained`, of the images `ids`) drops
    without it. Each removal split's first len(ids) images must be those images without the part."""
    drops = {}
    for part, removed in removals.items():
        if [p.original_id for p in removed.params[: len(ids)]] != list(ids):
            raise ValueError(f"removal split {removed!r}: its originals are not the maps' images")
        drops[part] = explained - class_logit(removed.logits(model)[: len(ids)], targets)
    return drops


# ---- the whole evaluation -----------------------------------------------------------


class _Inputs:
    """What the scores of one evaluation read, each computed once and only when a score asks for it."""

    def __init__(self, evaluation: "AttributionEvaluation", split, maps, removals: dict | None, attributes: Sequence[str]):
        self.evaluation, self.split, self.maps, self.removals, self.attributes = evaluation, split, maps, removals or {}, attributes
        self.model, self.seed, self.n = evaluation.model, evaluation.seed, len(maps.ids)
        self.masks, self.images, self.targets = split.masks[: self.n], split.images[: self.n], maps.targets
        self.logits = split.logits(self.model)[: self.n]
        self.explained = class_logit(self.logits, self.targets)
        self.extra: dict = {"n": self.n, "wsl_alpha": {}}

    def holds(self, need: str | None) -> bool:
        return {None: True, "removals": len(self.deletion_blocks) >= 3, "bg_color": "bg_color" in self.attributes,
                "attributes": bool(self.attributes), "contrast": self.evaluation.contrast is not None,
                "sanity": self.evaluation.sanity_images > 0}[need]

    @functools.cached_property
    def regions(self) -> dict[str, np.ndarray]:
        return {r: region_masks(self.masks, r) for r in ("animal", *BLOCK_GROUPS)}

    @functools.cached_property
    def removal_drops(self) -> dict[str, np.ndarray]:
        """Per removed part, how much the explained class's logit drops without it."""
        drops = removal_drops(self.model, self.removals, self.maps.ids, self.explained, self.targets)
        self.extra["removal_drop"] = {part: {"mean": float(np.mean(d)), "mean_abs": float(np.mean(np.abs(d))),
                                             "flip_percent": float(np.mean(np.sign(self.explained - d) != np.sign(self.explained)) * 100)}
                                      for part, d in drops.items()}
        return drops

    @property
    def deletion_blocks(self) -> list[str]:
        return [b for b in SINGLE_BLOCKS if b in self.removals]

    @functools.cached_property
    def background_effect(self) -> np.ndarray:
        return class_logit(self.split.intervention("bg_color").logits(self.model)[: self.n], self.targets) - self.explained

    @functools.cached_property
    def interventions(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Per attribute: |Δlogit| of its intervention and the pixels it changed."""
        splits = {attribute: self.split.intervention(attribute) for attribute in self.attributes}
        return [(attribute, np.abs(inter.logits(self.model)[: self.n] - self.logits),
                 changed_pixels(self.images, inter.images[: self.n], self.masks, inter.masks[: self.n]))
                for attribute, inter in splits.items()]


def _wsl(x: _Inputs, method: str, a: np.ndarray) -> np.ndarray:
    values, x.extra["wsl_alpha"][method] = wsl_localisation(a, x.masks)
    return values


def _single_deletion(x: _Inputs, method: str, a: np.ndarray) -> np.ndarray:
    blocks = x.deletion_blocks
    drops = np.stack([x.removal_drops[b] for b in blocks], axis=1)
    return single_deletion(part_masses(a, x.masks, blocks), drops)


def _attribute_agreement(x: _Inputs, i: int, method: str, a: np.ndarray, n_resamples: int) -> Interval:
    masses = [changed_mass(a, changed) for _, _, changed in x.interventions]
    x.extra.setdefault("attribute_agreement_per_attribute", {})[method] = {
        attribute: spearman(mass, effect) for (attribute, effect, _), mass in zip(x.interventions, masses)}
    effect = np.concatenate([e for _, e, _ in x.interventions])
    return spearman_interval(np.concatenate(masses), effect, n_resamples, x.seed + 100 + i)


def _contrast_pass(x: _Inputs, i: int, method: str, a: np.ndarray, n_resamples: int) -> Interval:
    """BAM-style (Yang & Kim 2019, "Benchmarking attribution methods with relative feature
    importance"): a map passes on an image when its background share is higher for the model
    that relies on the background; on average when the mean difference's interval is above 0."""
    from two4two.explain.attribution import attribution_method

    background = region_masks(x.masks, "background")
    shares = []
    for model in x.evaluation.contrast:
        targets = (x.split.logits(model)[: x.n] > 0).astype(np.int64)
        maps = attribution_method(method, model, seed=x.seed, **x.evaluation.options).attribute(x.images, targets, x.masks)
        shares.append(relevance_mass_accuracy(maps, background))
    diff = shares[0] - shares[1]
    passed = np.where(np.isfinite(diff), diff > 0, np.nan)  # an image without background has no answer
    mean_diff = mean_interval(diff, n_resamples, x.seed + 300 + i)
    x.extra.setdefault("contrast", {})[method] = {
        "mean_share_reliant": float(np.nanmean(shares[0])), "mean_share_unreliant": float(np.nanmean(shares[1])),
        "mean_difference": [mean_diff.value, mean_diff.low, mean_diff.high], "passes_on_average": bool(mean_diff.low > 0)}
    return mean_interval(passed, n_resamples, x.seed + 200 + i)


def _sanity(x: _Inputs, i: int, method: str, a: np.ndarray, n_resamples: int) -> Interval:
    k = min(x.evaluation.sanity_images, x.n)
    steps = cascading_randomisation(x.model, method, x.images[:k], x.targets[:k], x.masks[:k], x.seed, **x.evaluation.options)
    x.extra.setdefault("sanity", []).extend(steps)
    return mean_interval(np.array(steps[-1]["per_image_spearman_abs"]), n_resamples, x.seed + 400)


@dataclass(frozen=True)
class Score:
    """One score: how it reads, where it comes from, and how `AttributionEvaluation` computes it.

    `per_image(inputs, method, map)` gives one value per image, averaged with a bootstrap
    interval; `interval(inputs, method_index, method, map, n_resamples)` gives the interval
    itself. Neither: computed elsewhere (the faithfulness curves) and merged in. `needs`: what
    the evaluation must be given for it (removal splits, an intervention, a model pair, …).
    """

    name: str
    label: str
    higher_is_better: bool = True
    source: str = ""
    per_image: Callable | None = None
    interval: Callable | None = None
    needs: str | None = None


def _pointing(region: str) -> Callable:
    return lambda x, m, a: pointing_game(a, x.regions[region], seed=x.seed)


def _mass(region: str) -> Callable:
    return lambda x, m, a: relevance_mass_accuracy(a, x.regions[region])


def _rank(region: str) -> Callable:
    return lambda x, m, a: relevance_rank_accuracy(a, x.regions[region], x.seed)


SCORES = (
    Score("pointing_game_animal", "pointing game (animal)", True, "Zhang et al. 2018", _pointing("animal")),
    Score("pointing_game_right_legs", "pointing game (right legs)", True, "Zhang et al. 2018", _pointing("right_legs")),
    Score("mass_animal", "relevance mass (animal)", True, "Arras et al. 2022", _mass("animal")),
    *(Score(f"mass_{g}", f"relevance mass ({g.replace('_', ' ')})", True, "Arras et al. 2022", _mass(g)) for g in BLOCK_GROUPS),
    Score("rank_animal", "relevance rank (animal)", True, "Arras et al. 2022", _rank("animal")),
    Score("rank_right_legs", "relevance rank (right legs)", True, "Arras et al. 2022", _rank("right_legs")),
    Score("energy_pointing_game", "energy pointing game", True, "Wang et al. 2020", lambda x, m, a: energy_pointing_game(a, x.masks)),
    Score("wsl", "WSL (IoU > 0.5)", True, "Nguyen et al. 2021", _wsl),
    Score("single_deletion", "single deletion ρ (8 blocks)", True, "Hesse et al. 2023", _single_deletion, needs="removals"),
    Score("background_independence", "background independence", True, "Hesse et al. 2023",
          lambda x, m, a: background_independence(a, x.masks, x.background_effect, x.explained), needs="bg_color"),
    Score("attribute_agreement", "attribute agreement ρ", True, "ours: intervention pairs",
          interval=_attribute_agreement, needs="attributes"),
    Score("contrast_pass", "model contrast: per-image pass", True, "Yang & Kim 2019 (BAM), adapted",
          interval=_contrast_pass, needs="contrast"),
    Score("sanity_spearman_abs", "sanity: |ρ| after full randomisation", False, "Adebayo et al. 2018",
          interval=_sanity, needs="sanity"),
    Score("road_probability_gap", "ROAD: LeRF − MoRF (probability)", True, "Rong et al. 2022"),
    Score("reveal_cross_entropy", "top-p % shown: cross-entropy", False, "Biessmann & Refiano 2021"),
)
SCORE_BY_NAME = {s.name: s for s in SCORES}
SINGLE_BLOCKS = tuple(BLOCK_NAMES)


@dataclass
class AttributionScores:
    """Methods × scores with intervals, the per-score ranking and the scores' rank correlations."""

    values: dict[str, dict[str, Interval]]  # method → score → interval
    extra: dict = field(default_factory=dict)  # ground truth and per-attribute details
    sanity: list[dict] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        return list(self.values)

    @classmethod
    def read(cls, directory: str | Path) -> "AttributionScores":
        """The scores `write` put in `directory` (attribution_scores.csv and .json)."""
        import csv
        import json

        from two4two.explain.attribution import AttributionError

        directory = Path(directory)
        path = directory / "attribution_scores.csv"
        if not path.is_file():
            raise AttributionError(f"{path}: no attribution scores; write them with two4two evaluate attributions")
        values: dict[str, dict[str, Interval]] = {}
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                values.setdefault(row["method"], {})[row["score"]] = Interval(float(row["value"]), float(row["low"]), float(row["high"]))
        side = directory / "attribution_scores.json"
        extra = json.loads(side.read_text()) if side.exists() else {}
        return cls(values, extra.get("extra", {}), extra.get("sanity", []))

    def merged(self, more: dict[str, dict[str, Interval]]) -> "AttributionScores":
        """These scores with more per method (e.g. the faithfulness curves' `score_intervals`) added or replaced."""
        values = {m: {**self.values.get(m, {}), **more.get(m, {})} for m in {**self.values, **more}}
        return AttributionScores(values, self.extra, self.sanity)

    def scores_present(self) -> list[Score]:
        return [s for s in SCORES if any(s.name in v for v in self.values.values())]

    def value(self, method: str, score: str) -> float:
        iv = self.values[method].get(score)
        return float("nan") if iv is None else iv.value

    def ranks(self) -> dict[str, dict[str, float]]:
        """score → method → rank (1 = best), ties averaged; methods without the score get none."""
        from scipy import stats

        out = {}
        for s in self.scores_present():
            vals = np.array([self.value(m, s.name) for m in self.methods])
            ok = np.isfinite(vals)
            ranks = np.full(len(vals), np.nan)
            ranks[ok] = stats.rankdata(-vals[ok] if s.higher_is_better else vals[ok])
            out[s.name] = dict(zip(self.methods, ranks))
        return out

    def rank_correlation(self) -> tuple[list[str], np.ndarray]:
        """Spearman ρ between every two scores across methods (pairwise-complete), oriented so that
        + means the two scores order the methods alike (each score's 'better' direction)."""
        present = self.scores_present()
        cols = [np.array([self.value(m, s.name) * (1 if s.higher_is_better else -1) for m in self.methods]) for s in present]
        matrix = np.array([[1.0 if i == j else spearman(x, y) for j, y in enumerate(cols)] for i, x in enumerate(cols)],
                          np.float64).reshape(len(cols), len(cols))
        return [s.name for s in present], matrix

    def records(self) -> list[dict]:
        ranks = self.ranks()
        given = [(m, s, self.values[m][s.name]) for m in self.methods for s in self.scores_present()
                 if s.name in self.values[m]]
        return [{"method": m, "score": s.name, "value": iv.value, "low": iv.low, "high": iv.high,
                 "rank": ranks[s.name][m], "higher_is_better": s.higher_is_better, "source": s.source}
                for m, s, iv in given]

    def format_table(self, digits: int = 2) -> str:
        """Markdown: methods as rows, scores as columns, `value [low, high] (rank)`."""
        from two4two.explain.attribution import LABELS

        present, ranks = self.scores_present(), self.ranks()
        head = "| method | " + " | ".join(f"{s.label}{'' if s.higher_is_better else ' ↓'}" for s in present) + " |"
        lines = [head, "|" + "---|" * (len(present) + 1)]
        for m in self.methods:
            cells = []
            for s in present:
                iv = self.values[m].get(s.name)
                rank = ranks[s.name][m]
                cells.append("—" if iv is None or math.isnan(iv.value) else f"{iv.fmt(digits)} ({rank:g})")
            lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def format_correlation(self) -> str:
        names, matrix = self.rank_correlation()
        short = {n: str(i + 1) for i, n in enumerate(names)}
        lines = ["| score | " + " | ".join(short[n] for n in names) + " |", "|" + "---|" * (len(names) + 1)]
        for n, row in zip(names, matrix):
            lines.append(f"| {short[n]} {SCORE_BY_NAME[n].label} | " + " | ".join("—" if math.isnan(v) else f"{v:+.2f}" for v in row) + " |")
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        from two4two.io import atomic_write_csv, atomic_write_json, atomic_write_text

        out = Path(out_dir)
        paths = {"csv": atomic_write_csv(out / "attribution_scores.csv", self.records()),
                 "json": atomic_write_json(out / "attribution_scores.json", {"extra": self.extra, "sanity": self.sanity})}
        text = ("## Attribution scores (value [95 % interval] (rank; 1 = best); ↓: lower is better)\n\n" + self.format_table()
                + "\n\n## Rank correlation between the scores (Spearman ρ across methods)\n\n" + self.format_correlation() + "\n")
        paths["md"] = atomic_write_text(out / "attribution_scores.md", text)
        paths["png"] = self.plot(out / "attribution_scores.png")
        if self.sanity:
            paths["sanity_png"] = plot_sanity(self.sanity, out / "sanity_checks.png")
        return paths

    def plot(self, path: Path) -> Path:
        """One panel per score (methods' values with intervals), and the rank-correlation matrix."""
        from two4two.explain.attribution import LABELS
        from two4two.io import atomic_write_bytes
        from two4two.plotting import figure_png, pyplot

        plt = pyplot()
        present = self.scores_present()
        cols = 4
        rows = math.ceil((len(present) + 1) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
        labels = [LABELS.get(m, m) for m in self.methods]
        for ax, s in zip(axes.flat, present):
            given = [self.values[m].get(s.name, Interval(np.nan, np.nan, np.nan)) for m in self.methods]
            vals, low, high = (np.array([getattr(iv, k) for iv in given]) for k in ("value", "low", "high"))
            y = np.arange(len(vals))
            err = np.nan_to_num(np.vstack([vals - low, high - vals]), nan=0.0).clip(min=0)
            ax.barh(y, np.nan_to_num(vals), xerr=err, color="tab:blue", alpha=0.8)
            ax.set_yticks(y, labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_title(s.label + ("" if s.higher_is_better else " (lower is better)"), fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
        names, matrix = self.rank_correlation()
        ax = axes.flat[len(present)]
        im = ax.imshow(matrix, cmap="RdBu", vmin=-1, vmax=1)
        ax.set_xticks(range(len(names)), [str(i + 1) for i in range(len(names))], fontsize=6)
        ax.set_yticks(range(len(names)), [f"{i + 1} {SCORE_BY_NAME[n].label}" for i, n in enumerate(names)], fontsize=5)
        ax.set_title("rank correlation between scores", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
        for extra_ax in list(axes.flat)[len(present) + 1:]:
            extra_ax.axis("off")
        return atomic_write_bytes(path, figure_png(fig, dpi=100))


def plot_sanity(records: list[dict], path: Path) -> Path:
    """Adebayo et al.'s cascade plot: similarity to the trained model's maps per randomised layer."""
    from two4two.explain.attribution import CONTROLS, LABELS
    from two4two.io import atomic_write_bytes
    from two4two.plotting import figure_png, pyplot

    plt = pyplot()
    methods = list(dict.fromkeys(r["method"] for r in records))
    layers = list(dict.fromkeys(r["randomised_down_to"] for r in records))
    colours = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, key, title in zip(axes, ("spearman", "spearman_abs", "ssim"), ("Spearman ρ", "Spearman ρ of |map|", "SSIM")):
        for i, m in enumerate(methods):  # a colour each; the model-free controls dashed (they stay at 1)
            rs = [r for r in records if r["method"] == m]
            ax.plot([0] + [r["layers"] for r in rs], [1.0] + [r[key] for r in rs], marker="o", ms=3, label=LABELS.get(m, m),
                    color=colours(i % 20), linestyle="--" if m in CONTROLS else "-")
        ax.set_xticks(range(len(layers) + 1), ["trained"] + layers, rotation=45, ha="right", fontsize=7)
        ax.set_title(title + " to the trained model's maps", fontsize=9)
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].set_ylabel("similarity")
    axes[-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle("sanity check: cascading randomisation from the output layer down (Adebayo et al. 2018)", fontsize=9)
    return atomic_write_bytes(path, figure_png(fig, dpi=100))


class AttributionEvaluation:
    """Every score of `SCORES` for one model's maps of one split (the first len(maps) images).

    `removals` (part → Split of the same originals re-rendered without it), the split's
    intervention splits and a `contrast` pair (reliant model, unreliant model) are used when
    given; `sanity_images` images go through the cascading randomisation of each method.
    """

    def __init__(self, model, n_resamples: int = 1000, sanity_images: int = 32, contrast=None, progress: bool = False,
                 method_options: dict | None = None, seed: int = 0):
        self.model, self.n_resamples, self.sanity_images = model, n_resamples, sanity_images
        self.contrast, self.progress, self.options, self.seed = contrast, progress, method_options or {}, seed

    def evaluate(self, split, maps, removals: dict | None = None, attributes: Sequence[str] = ()) -> AttributionScores:
        n = len(maps.ids)
        if [p.id for p in split.params[:n]] != list(maps.ids):
            raise ValueError(f"maps: their image ids are not the first {n} of {split!r}; compute them on this split")
        x = _Inputs(self, split, maps, removals, attributes)
        if removals:
            x.removal_drops  # noqa: B018  (recorded in extra even when fewer than 3 single blocks were removed)
        per_image = [s for s in SCORES if s.per_image is not None and x.holds(s.needs)]
        values = {m: {s.name: mean_interval(s.per_image(x, m, a), self.n_resamples, self.seed + i)
                      for i, s in enumerate(per_image)} for m, a in maps.maps.items()}
        for s in SCORES:
            if s.interval is not None and x.holds(s.needs):
                for i, (m, a) in enumerate(maps.maps.items()):
                    values[m][s.name] = s.interval(x, i, m, a, self.n_resamples)
        return AttributionScores(values, x.extra, x.extra.pop("sanity", []))
