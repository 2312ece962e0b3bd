"""Our localisation scores beside a peer library's on the same maps: Quantus (Hedström et al. 2023).

Quantus implements three of the scores of `attribution_scores`: the pointing game, relevance
mass accuracy and relevance rank accuracy. `cross_check(maps, masks)` computes each with
Quantus, set up as ours is defined (the signed maximum for the pointing game; |map| without
normalisation for the two relevance scores), and counts per score and method the images on
which both give the same value. Where they differ, it is for one of `KNOWN_DIFFERENCES`
(Quantus 0.6.0: an empty region, a tied maximum, tied ranks, and a signed default), each
shown on a planted map by tests/test_quantus_check.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from two4two.errors import Two4TwoError
from two4two.explain.attribution_scores import pointing_game, region_masks, relevance_mass_accuracy, relevance_rank_accuracy

KNOWN_DIFFERENCES = {
    "empty region": "Quantus' PointingGame writes NaN into a boolean array, where it becomes True: an image whose "
                    "region is empty counts as a hit (ours: NaN, no answer).",
    "tied maximum": "Quantus' PointingGame counts a hit when any pixel sharing the maximum is inside, so a constant "
                    "map (or the silhouette control on a sub-region) always hits (ours: one of the tied pixels at random).",
    "tied ranks": "Quantus' RelevanceRankAccuracy orders tied pixels by np.argsort, i.e. by position, so a constant "
                  "map scores whatever share of the first rows lies in the region (ours: ties at random).",
    "signed mass": "Quantus' RelevanceMassAccuracy defaults to the signed map (abs=False), where negative evidence "
                   "off the region raises the score above 1 or below 0; with abs=True, normalise=False it is ours.",
}

SCORES = ("pointing_game", "relevance_mass", "relevance_rank")
TOLERANCE = 1e-5  # float32 sums in Quantus against float64 here


@dataclass(frozen=True)
class Agreement:
    """One score of one method on one region: how often ours and Quantus' give the same value."""

    method: str
    score: str
    region: str
    n: int  # images where both give a value
    agree: int  # of those, equal within TOLERANCE
    max_difference: float
    quantus_only: int  # images where only Quantus gives a value (ours: NaN)
    ours_mean: float
    quantus_mean: float
    refused: str = ""  # Quantus' reason when it would not score these maps at all
    causes: tuple[str, ...] = ()  # the KNOWN_DIFFERENCES present on the images where the two differ
    unexplained: int = 0  # images where they differ and none of those is present


def quantus_scores(maps: np.ndarray, regions: np.ndarray, images: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Quantus' three localisation scores per image of signed maps (N × H × W) against boolean regions."""
    try:
        import quantus
    except ImportError as exc:
        raise Two4TwoError("the Quantus cross-check needs quantus: pip install -e '.[dev]'") from exc
    import warnings

    n = len(maps)
    a = np.asarray(maps, np.float32)[:, None]
    s = np.asarray(regions, np.float32)[:, None]
    x = (np.zeros((n, 3, *a.shape[2:]), np.float32) if images is None
         else np.moveaxis(np.asarray(images, np.float32) / 255, -1, 1))
    y = np.zeros(n, np.int64)  # localisation metrics do not read the labels or a model
    call = dict(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            quiet = dict(normalise=False, disable_warnings=True)
            metrics = {"pointing_game": quantus.PointingGame(**quiet),
                       "relevance_mass": quantus.RelevanceMassAccuracy(abs=True, **quiet),
                       "relevance_rank": quantus.RelevanceRankAccuracy(abs=True, **quiet)}
            return {score: np.asarray(metric(**call), np.float64) for score, metric in metrics.items()}
        except AssertionError as exc:  # Quantus checks its inputs with assert, e.g. one value in the whole batch
            raise QuantusRefused(str(exc).split(".")[0]) from exc


class QuantusRefused(Two4TwoError):
    """Quantus would not score these maps (its input checks refuse them)."""


def our_scores(maps: np.ndarray, regions: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    return {"pointing_game": pointing_game(maps, regions, seed=seed),
            "relevance_mass": relevance_mass_accuracy(maps, regions),
            "relevance_rank": relevance_rank_accuracy(maps, regions, seed)}


def cross_check(maps: dict[str, np.ndarray], masks: np.ndarray, regions: Sequence[str] = ("animal", "right_legs"),
                images: np.ndarray | None = None, seed: int = 0) -> list[Agreement]:
    """Every method's maps scored by both implementations on each region; one Agreement per method × score × region."""
    out = []
    for region in regions:
        truth = region_masks(masks, region)
        for method, a in maps.items():
            ours = our_scores(a, truth, seed)
            try:
                theirs = quantus_scores(a, truth, images)
            except QuantusRefused as exc:
                out += [Agreement(method, score, region, 0, 0, 0.0, 0, float(np.nanmean(ours[score])), float("nan"), str(exc))
                        for score in SCORES]
                continue
            flat = np.asarray(a, np.float64).reshape(len(a), -1)
            tied_max = (flat == flat.max(axis=1, keepdims=True)).sum(axis=1) > 1
            tied_any = np.array([len(np.unique(np.abs(f))) < len(f) for f in flat])
            empty = ~truth.reshape(len(truth), -1).any(axis=1)
            for score in SCORES:
                o, q = ours[score], theirs[score]
                both = np.isfinite(o) & np.isfinite(q)
                differs = (both & ~(np.abs(o - q) <= TOLERANCE)) | (np.isfinite(o) != np.isfinite(q))
                known = {"empty region": empty, "tied maximum": tied_max if score == "pointing_game" else np.zeros_like(empty),
                         "tied ranks": tied_any if score == "relevance_rank" else np.zeros_like(empty)}
                causes = tuple(name for name, present in known.items() if (differs & present).any())
                explained = np.logical_or.reduce(list(known.values()))
                diff = np.abs(o[both] - q[both])
                out.append(Agreement(method, score, region, int(both.sum()), int((diff <= TOLERANCE).sum()),
                                     float(diff.max()) if len(diff) else 0.0, int((np.isfinite(q) & ~np.isfinite(o)).sum()),
                                     float(np.nanmean(o)) if np.isfinite(o).any() else float("nan"),
                                     float(np.nanmean(q)) if np.isfinite(q).any() else float("nan"),
                                     causes=causes, unexplained=int((differs & ~explained).sum())))
    return out


def format_agreement(rows: list[Agreement]) -> str:
    """Markdown: one row per method × score × region, the share of images on which both agree."""
    from two4two.explain.attribution import LABELS

    lines = ["| method | score | region | images agreeing | max \\|difference\\| | mean (ours) | mean (Quantus) | where they differ |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        agreeing = f"Quantus refused: {r.refused}" if r.refused else f"{r.agree}/{r.n}"
        why = ", ".join(list(r.causes) + ([f"{r.unexplained} image(s) unexplained"] if r.unexplained else [])) or "—"
        lines.append(f"| {LABELS.get(r.method, r.method)} | {r.score.replace('_', ' ')} | {r.region.replace('_', ' ')} "
                     f"| {agreeing} | {r.max_difference:.2g} | {r.ours_mean:.3f} | {r.quantus_mean:.3f} | {why} |")
    return "\n".join(lines)
