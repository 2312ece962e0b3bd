"""Attribution scores against planted maps whose answer is known, and the evaluation's plumbing
through a painted dataset (tests/paint_worker.py: a square animal of obj_color on a grey
background of bg_color) with a parameter-reading model."""

import json

import numpy as np
import pytest
from extras import imported

from two4two.explain.attribution import AttributionMaps
from two4two.explain.attribution_scores import (
    AttributionEvaluation,
    AttributionScores,
    background_independence,
    changed_pixels,
    energy_pointing_game,
    map_similarity,
    pointing_game,
    region_masks,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    single_deletion,
    wsl_localisation,
)
from two4two.intervals import Interval

imported("models", "statsmodels")


def planted_masks(n=20, size=32, seed=0):
    """Label masks: a random box per image with a right-leg strip (labels 7, 8) and spine blocks."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for m in masks:
        top, left = rng.integers(2, 10, 2)
        h, w = rng.integers(10, 18, 2)
        m[top:top + h, left:left + w] = 4  # spine_left_center
        m[top:top + 3, left:left + w] = 7  # arm_right_top
        m[top + h - 3:top + h, left:left + 4] = 1  # arm_left_top
    return masks


def test_a_map_equal_to_the_mask_scores_one_and_a_background_map_zero():
    masks = planted_masks()
    animal = region_masks(masks, "animal")
    on_animal = animal.astype(np.float32)
    on_background = (~animal).astype(np.float32)
    for maps, expected in ((on_animal, 1.0), (on_background, 0.0)):
        assert np.allclose(relevance_mass_accuracy(maps, animal), expected)
        assert np.allclose(relevance_rank_accuracy(maps, animal), expected)
        assert np.allclose(pointing_game(maps, animal), expected)
    # Per block group: a map equal to the right legs' mask scores 1 there and 0 on the spine.
    legs = region_masks(masks, "right_legs").astype(np.float32)
    assert np.allclose(relevance_mass_accuracy(legs, region_masks(masks, "right_legs")), 1.0)
    assert np.allclose(relevance_mass_accuracy(legs, region_masks(masks, "spine")), 0.0)
    assert np.allclose(relevance_rank_accuracy(legs, region_masks(masks, "right_legs")), 1.0)
    # The box-based scores: the animal's own map fills its box.
    assert np.allclose(energy_pointing_game(on_animal, masks), 1.0)
    hits, alpha = wsl_localisation(on_animal, masks)
    assert hits.mean() == 1.0 and 0 < alpha < 1
    hits, _ = wsl_localisation(on_background, masks)
    assert hits.mean() == 0.0


def test_a_constant_map_scores_the_regions_share_not_one_and_empty_regions_have_no_answer():
    masks = planted_masks()
    animal = region_masks(masks, "animal")
    flat = np.ones(masks.shape, np.float32)
    share = animal.reshape(len(masks), -1).mean(axis=1)
    assert np.allclose(relevance_mass_accuracy(flat, animal), share)
    # Ties broken at random: the rank accuracy of a flat map is about the region's share.
    assert abs(relevance_rank_accuracy(flat, animal).mean() - share.mean()) < 0.1
    # and so is the pointing game's tied maximum: over 400 images it hits at the region's share
    # (binomial sd ≈ 0.02), where "any tied pixel inside" would give 1 and raster order 0.
    many = planted_masks(400, seed=1)
    many_animal = region_masks(many, "animal")
    hits = pointing_game(np.ones(many.shape, np.float32), many_animal)
    assert abs(hits.mean() - many_animal.reshape(400, -1).mean(axis=1).mean()) < 0.07
    assert 0 < hits.mean() < 1
    empty = np.zeros_like(animal)
    assert np.isnan(pointing_game(flat, empty)).all()
    assert np.isnan(relevance_mass_accuracy(flat, empty)).all()


def test_single_deletion_is_one_when_the_map_orders_the_parts_as_their_removal_does():
    masses = np.array([[3.0, 2.0, 1.0, 0.5], [1.0, 2.0, 3.0, 4.0]])
    drops = np.array([[0.9, 0.5, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    assert np.allclose(single_deletion(masses, drops), 1.0)
    assert np.allclose(single_deletion(masses, -drops), -1.0)
    assert np.isnan(single_deletion(np.ones((1, 4)), drops[:1])).all()


def test_background_independence_only_counts_images_where_the_background_did_not_matter():
    masks = planted_masks(4)
    maps = region_masks(masks, "animal").astype(np.float32)
    logits = np.array([2.0, 2.0, -3.0, 1.0])
    effect = np.array([0.01, 1.5, 0.0, 0.9])  # images 1 and 3: the background moved the logit
    out = background_independence(maps, masks, effect, logits)
    assert np.allclose(out[[0, 2]], 1.0) and np.isnan(out[[1, 3]]).all()


def test_changed_pixels_ignore_render_noise_but_not_a_real_change():
    rng = np.random.default_rng(0)
    a = rng.integers(50, 200, (2, 16, 16, 3)).astype(np.uint8)
    b = (a.astype(int) + rng.integers(-3, 4, a.shape)).astype(np.uint8)
    b[0, :4, :4] = 255
    changed = changed_pixels(a, b)
    assert changed[0, :4, :4].all() and changed.sum() == 16


def test_map_similarity_is_one_for_identical_maps_and_low_for_unrelated_ones():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 24, 24))
    same = map_similarity(a, a.copy())
    assert same == {"spearman": 1.0, "spearman_abs": 1.0, "ssim": 1.0}
    other = map_similarity(a, rng.standard_normal((5, 24, 24)))
    assert abs(other["spearman"]) < 0.1 and other["ssim"] < 0.2


def test_ranks_and_rank_correlation_follow_each_scores_direction():
    scores = AttributionScores({
        "a": {"mass_animal": Interval(0.9, 0.8, 1.0), "sanity_spearman_abs": Interval(0.1, 0, 0.2), "wsl": Interval(0.2, 0, 1)},
        "b": {"mass_animal": Interval(0.5, 0.4, 0.6), "sanity_spearman_abs": Interval(0.5, 0, 1), "wsl": Interval(0.5, 0, 1)},
        "c": {"mass_animal": Interval(0.1, 0.0, 0.2), "sanity_spearman_abs": Interval(0.9, 0, 1), "wsl": Interval(0.9, 0, 1)},
    })
    ranks = scores.ranks()
    assert ranks["mass_animal"] == {"a": 1, "b": 2, "c": 3}
    assert ranks["sanity_spearman_abs"] == {"a": 1, "b": 2, "c": 3}  # lower is better there
    names, matrix = scores.rank_correlation()
    i, j, k = names.index("mass_animal"), names.index("sanity_spearman_abs"), names.index("wsl")
    assert matrix[i, j] == pytest.approx(1.0) and matrix[i, k] == pytest.approx(-1.0)
    table = scores.format_table().splitlines()
    assert table[2].startswith("| a | 0.90 [0.80, 1.00] (1) |") and len(table) == 2 + 3


# ---- through a painted dataset -----------------------------------------------------------

CONFIG = {
    "name": "painted_scores",
    "sampler": "study2022",
    "seed": 5,
    "resolution": [24, 24],
    "output_dir": "unused",
    "splits": {"test": {"n": 120, "interventions": ["obj_color", "bg_color", "obj_rotation_yaw"]}},
}


class CubicColourReader:
    """A parameter-reading model that uses only colour, non-linearly, so its effect varies by image."""

    reads_parameters = True

    def __call__(self, params):
        return np.array([40 * (p.obj_color - 0.5) ** 3 for p in params])


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    import paint_worker

    from two4two.dataset import ensure
    from two4two.split import Split

    root = tmp_path_factory.mktemp("painted")
    path = root / "config.yaml"
    path.write_text(json.dumps(CONFIG))
    ensure(path, output_dir=root / "data", workers=1, worker_target=paint_worker.serve, progress=False)
    return Split(root / "data", "test")


def maps_of(split, model, values):
    logits = split.logits(model)
    return AttributionMaps({"planted": values.astype(np.float32)}, [p.id for p in split.params], (logits > 0).astype(int),
                           logits, {})


def test_a_map_built_from_the_true_colour_effect_agrees_with_colour_interventions(painted):
    model = CubicColourReader()
    masks = painted.masks
    animal = masks > 0
    effect = np.abs(painted.intervention("obj_color").logits(model) - painted.logits(model))
    # The true effect, spread evenly over the animal: its mass where colour changed is the effect.
    truth = animal * (effect / animal.reshape(len(animal), -1).sum(axis=1))[:, None, None]
    noise = np.random.default_rng(0).random(masks.shape)
    evaluation = AttributionEvaluation(model, n_resamples=200, sanity_images=0)
    attributes = ["obj_color", "bg_color", "obj_rotation_yaw"]
    good = evaluation.evaluate(painted, maps_of(painted, model, truth), attributes=attributes)
    bad = evaluation.evaluate(painted, maps_of(painted, model, noise), attributes=attributes)
    colour = good.extra["attribute_agreement_per_attribute"]["planted"]["obj_color"]
    assert colour > 0.9
    assert abs(bad.extra["attribute_agreement_per_attribute"]["planted"]["obj_color"]) < 0.3
    # Pooled over every pair: the planted map is where the change that mattered happened.
    pooled = good.values["planted"]["attribute_agreement"]
    assert pooled.value > 0.7 and pooled.low <= pooled.value <= pooled.high
    assert good.values["planted"]["attribute_agreement"].value > bad.values["planted"]["attribute_agreement"].value + 0.3
    # Colour-only: the background never matters, so background independence is defined on every image.
    assert good.values["planted"]["background_independence"].value == pytest.approx(1.0)
    assert good.values["planted"]["mass_animal"].value == pytest.approx(1.0)


def test_maps_of_other_images_are_refused(painted):
    model = CubicColourReader()
    maps = maps_of(painted, model, np.zeros(painted.masks.shape))
    maps.ids = list(reversed(maps.ids))
    with pytest.raises(ValueError, match="not the first"):
        AttributionEvaluation(model, sanity_images=0).evaluate(painted, maps)


@pytest.mark.slow
def test_the_written_table_ranks_methods_and_correlates_scores(painted, tmp_path):
    model = CubicColourReader()
    animal = (painted.masks > 0).astype(np.float32)
    logits = painted.logits(model)
    maps = AttributionMaps({"silhouette": animal, "random": np.random.default_rng(2).random(animal.shape).astype(np.float32),
                            "sobel": 1 - animal}, [p.id for p in painted.params], (logits > 0).astype(int), logits, {})
    scores = AttributionEvaluation(model, n_resamples=100, sanity_images=0).evaluate(painted, maps)
    assert scores.ranks()["mass_animal"] == {"silhouette": 1, "random": 2, "sobel": 3}
    paths = scores.write(tmp_path)
    text = paths["md"].read_text()
    assert "silhouette (control)" in text and "Rank correlation" in text
    rows = paths["csv"].read_text().splitlines()
    assert rows[0].startswith("method,score,value,low,high,rank")
    assert len(rows) == 1 + 3 * len(scores.scores_present())


def test_model_contrast_passes_a_map_that_follows_the_model_and_fails_one_that_does_not(painted):
    """BAM-style contrast with two models whose reliance is known by construction: one reads only the
    background (the image's corners), one only the animal (its centre). Gradients move with the model;
    the silhouette control is the same map for both, so it never passes."""
    torch = imported("models", "torch")

    class Reader(torch.nn.Module):
        def __init__(self, rows, cols):
            super().__init__()
            self.rows, self.cols = rows, cols
            self.scale = torch.nn.Parameter(torch.tensor(8.0))

        def forward(self, x):
            return self.scale * (x[:, 0][:, self.rows][:, :, self.cols].mean(dim=(1, 2)) - 0.5)

    corners, centre = [0, 1, 22, 23], [11, 12]
    background_reader, animal_reader = Reader(corners, corners), Reader(centre, centre)
    logits = painted.logits(animal_reader)
    maps = AttributionMaps({"gradient": np.zeros(painted.masks.shape, np.float32),
                            "silhouette": (painted.masks > 0).astype(np.float32)},
                           [p.id for p in painted.params], (logits > 0).astype(int), logits, {})
    scores = AttributionEvaluation(animal_reader, n_resamples=200, sanity_images=0,
                                   contrast=(background_reader, animal_reader)).evaluate(painted, maps)
    gradient, silhouette = scores.extra["contrast"]["gradient"], scores.extra["contrast"]["silhouette"]
    assert gradient["mean_share_reliant"] > 0.9 and gradient["mean_share_unreliant"] < 0.1
    assert gradient["passes_on_average"] and scores.values["gradient"]["contrast_pass"].value > 0.9
    assert silhouette["mean_difference"][0] == 0 and not silhouette["passes_on_average"]
    assert scores.values["silhouette"]["contrast_pass"].value == 0
