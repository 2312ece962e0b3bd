"""Our localisation scores against Quantus' on planted maps: equal where both are defined alike,
and each of the documented differences (KNOWN_DIFFERENCES) reproduced where Quantus goes wrong."""

import numpy as np
import pytest

from two4two.explain.attribution_scores import region_masks
from two4two.explain.quantus_check import KNOWN_DIFFERENCES, cross_check, our_scores, quantus_scores

pytestmark = pytest.mark.dev  # Quantus (imported by the tests that call it, not at collection: seconds)


def planted(n=30, size=16, seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for m in masks:
        top, left = rng.integers(3, 8, 2)
        m[top:top + 6, left:left + 6] = 4
        m[top:top + 2, left:left + 6] = 7
    return masks


def test_continuous_maps_get_the_same_three_scores_from_both_implementations():
    masks = planted()
    rng = np.random.default_rng(1)
    animal = region_masks(masks, "animal")
    maps = {"noise": rng.standard_normal(masks.shape).astype(np.float32),
            "near_the_animal": (animal + 0.3 * rng.standard_normal(masks.shape)).astype(np.float32)}
    rows = cross_check(maps, masks)
    assert len(rows) == 2 * 3 * 2
    for r in rows:
        assert r.n == len(masks) and r.agree == r.n, r
        assert r.quantus_only == 0 and r.causes == () and r.unexplained == 0
    # and the scores are not trivially equal: the map near the animal localises it, noise does not
    mass = {(r.method, r.region): r.ours_mean for r in rows if r.score == "relevance_mass"}
    assert mass[("near_the_animal", "animal")] > mass[("noise", "animal")] + 0.1


def test_quantus_counts_an_empty_region_as_a_pointing_game_hit():
    masks = planted(5)
    empty = np.zeros(masks.shape, bool)
    maps = np.random.default_rng(2).standard_normal(masks.shape).astype(np.float32)
    assert np.isnan(our_scores(maps, empty)["pointing_game"]).all()
    assert (quantus_scores(maps, empty)["pointing_game"] == 1).all()
    row = cross_check({"noise": maps}, np.zeros_like(masks), regions=["animal"])[0]
    assert row.score == "pointing_game" and row.n == 0 and row.quantus_only == 5
    assert row.causes == ("empty region",) and row.unexplained == 0
    assert "empty region" in KNOWN_DIFFERENCES


def test_a_constant_map_hits_every_time_in_quantus_and_at_the_regions_share_in_ours():
    masks = planted(300, seed=3)
    legs = region_masks(masks, "right_legs")
    # constant within each image; Quantus refuses a batch holding a single value, so the constants differ
    flat = np.broadcast_to(np.arange(1, 301, dtype=np.float32)[:, None, None], masks.shape).copy()
    share = legs.reshape(len(masks), -1).mean(axis=1).mean()  # 12 of 256 pixels
    theirs, ours = quantus_scores(flat, legs), our_scores(flat, legs)
    assert (theirs["pointing_game"] == 1).all()
    assert abs(ours["pointing_game"].mean() - share) < 0.04  # binomial sd ≈ 0.012
    # tied ranks: Quantus takes the first pixels in raster order, none of which is ever in the legs here
    assert (theirs["relevance_rank"] == 0).all()
    assert abs(ours["relevance_rank"].mean() - share) < 0.03
    assert {"tied maximum", "tied ranks"} <= set(KNOWN_DIFFERENCES)
    rows = {r.score: r for r in cross_check({"flat": flat}, masks, regions=["right_legs"])}
    assert rows["pointing_game"].causes == ("tied maximum",) and rows["relevance_rank"].causes == ("tied ranks",)
    assert rows["relevance_mass"].agree == 300 and all(r.unexplained == 0 for r in rows.values())


def test_a_batch_quantus_refuses_is_reported_not_raised():
    masks = planted(3)
    rows = cross_check({"ones": np.ones(masks.shape, np.float32)}, masks, regions=["animal"])
    assert [r.score for r in rows] == ["pointing_game", "relevance_mass", "relevance_rank"]
    assert all(r.n == 0 and "equal to one" in r.refused for r in rows)
    assert np.isfinite(rows[1].ours_mean)  # ours still scores it: the animal's share of the image


def test_quantus_default_mass_is_signed_and_leaves_zero_to_one():
    import quantus

    masks = planted(4)
    animal = region_masks(masks, "animal")
    signed = np.where(animal, 1.0, -0.5).astype(np.float32)  # evidence for on the animal, against elsewhere
    x = np.zeros((4, 3, 16, 16), np.float32)
    default = np.asarray(quantus.RelevanceMassAccuracy(disable_warnings=True)(
        model=None, x_batch=x, y_batch=np.zeros(4, int), a_batch=signed[:, None], s_batch=animal[:, None].astype(np.float32)))
    assert (default < 0).all()  # 36 inside against −110 outside
    ours = our_scores(signed, animal)["relevance_mass"]
    assert np.allclose(ours, 36 / (36 + 0.5 * 220))
    assert np.allclose(quantus_scores(signed, animal)["relevance_mass"], ours, atol=1e-6)
