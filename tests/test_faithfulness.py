"""ROAD's noisy linear imputation and the faithfulness curves, on cases whose answer is known."""

from dataclasses import dataclass

import numpy as np
import pytest
from extras import imported

from two4two.explain.attribution import AttributionMaps
from two4two.explain.faithfulness import (
    REVEAL_LEVELS,
    Faithfulness,
    FaithfulnessError,
    imputation_system,
    impute,
    pixel_order,
    removal_masks,
)

torch = imported("models", "torch")
pytestmark = pytest.mark.models


def test_linear_imputation_reproduces_a_ramp_exactly_and_keeps_the_kept_pixels():
    rows, cols = np.mgrid[0:16, 0:20]
    ramp = np.stack([0.02 * rows + 0.01 * cols + 0.1, 0.03 * cols + 0.05, 0.9 - 0.04 * rows], axis=-1)[None]
    removed = np.zeros((1, 16, 20), bool)
    removed[0, 3:9, 4:15] = True  # a patch
    removed[0, 11, 2] = removed[0, 12, 3] = True  # two diagonal neighbours
    removed[0, 5:14, 17] = True  # a thin line
    filled = impute(ramp, removed, "linear", noise=0.0)
    assert np.allclose(filled, ramp, atol=1e-12)
    noisy = impute(ramp, removed, "linear", noise=0.01, rng=3)
    assert np.array_equal(noisy[~removed], ramp[~removed])  # kept pixels untouched, bit for bit
    residual = (noisy - ramp)[removed]
    assert 0.007 < residual.std() < 0.013 and abs(residual.mean()) < 0.002  # σ = 0.01 on the imputed pixels only


def test_the_sparse_system_has_the_weights_of_the_definition_on_a_three_by_three_image():
    # Centre removed: its 4 direct neighbours weigh 1/6, the 4 diagonal ones 1/12, and they sum to 1.
    removed = np.zeros((1, 3, 3), bool)
    removed[0, 1, 1] = True
    a, known, ids, floating = imputation_system(removed)
    assert ids.tolist() == [4] and not floating.any()
    assert np.allclose(a.toarray(), [[1.0]])
    assert known.toarray()[0] == pytest.approx([1 / 12, 1 / 6, 1 / 12, 1 / 6, 0, 1 / 6, 1 / 12, 1 / 6, 1 / 12])
    # Top-left corner and its right neighbour removed: out-of-image neighbours are dropped, and the two unknowns
    # are tied by −1/6 each way.
    removed = np.zeros((1, 3, 3), bool)
    removed[0, 0, 0] = removed[0, 0, 1] = True
    a, known, ids, _ = imputation_system(removed)
    assert ids.tolist() == [0, 1]
    assert np.allclose(a.toarray(), [[1 / 6 + 1 / 6 + 1 / 12, -1 / 6], [-1 / 6, 2 / 6 + 2 / 12 + 1 / 6]])
    assert known.toarray()[0] == pytest.approx([0, 0, 0, 1 / 6, 1 / 12, 0, 0, 0, 0])
    assert known.toarray()[1] == pytest.approx([0, 0, 1 / 6, 1 / 12, 1 / 6, 1 / 12, 0, 0, 0])
    # Every pixel removed: no kept neighbour, so the image's system floats and is filled, not left singular.
    a, _, _, floating = imputation_system(np.ones((1, 3, 3), bool))
    assert floating.all() and np.allclose(a.toarray(), np.eye(9))
    assert np.allclose(impute(np.full((1, 3, 3, 3), 0.3), np.ones((1, 3, 3), bool), noise=0.0), 0.5)  # grey: nothing kept


def test_images_of_a_batch_are_imputed_independently(monkeypatch):
    from two4two.explain import faithfulness

    rng = np.random.default_rng(0)
    images = rng.random((5, 12, 12, 3))
    removed = rng.random((5, 12, 12)) < 0.4
    removed[3] = False  # an image with nothing to impute, inside a chunk
    together = impute(images, removed, noise=0.0)  # one system for all five
    for i in range(5):
        assert np.allclose(together[i], impute(images[i:i + 1], removed[i:i + 1], noise=0.0)[0], atol=1e-12)
    monkeypatch.setattr(faithfulness, "CHUNK_UNKNOWNS", 70)  # about one image per system
    assert len(faithfulness._chunks(removed)) >= 4
    assert np.allclose(impute(images, removed, noise=0.0), together, atol=1e-12)


def test_fixed_and_mean_imputation_and_bad_arguments():
    images = np.zeros((1, 4, 4, 3), np.uint8)
    images[0, :2] = 255
    removed = np.zeros((1, 4, 4), bool)
    removed[0, 3, 3] = True
    assert np.allclose(impute(images, removed, "fixed", noise=0)[0, 3, 3], 0.5)
    assert np.allclose(impute(images, removed, "mean", noise=0)[0, 3, 3], 8 / 15)
    with pytest.raises(FaithfulnessError, match="imputation: expected one of linear, fixed, mean, got 'zero'"):
        impute(images, removed, "zero")
    with pytest.raises(FaithfulnessError, match="percentages: expected values strictly between 0 and 100, got 100"):
        Faithfulness(None, percentages=[10, 100])


def test_masked_pixel_levels_keep_exactly_the_requested_share():
    maps = np.random.default_rng(1).standard_normal((5, 32, 32))
    order = pixel_order(maps)
    for level in REVEAL_LEVELS:
        shown = removal_masks(order, (32, 32), level, most_relevant=True)
        assert (shown.reshape(5, -1).sum(axis=1) == round(1024 * level / 100)).all()
        # and they are the most relevant ones: every shown pixel outranks every hidden one
        for m, s in zip(maps, shown):
            assert m[s].min() > m[~s].max()
    least = removal_masks(order, (32, 32), 30, most_relevant=False)
    assert (maps[least].max() if least.any() else 0) <= np.sort(maps.reshape(5, -1), axis=1)[:, round(0.3 * 1024)].max()


# ---- curves on synthetic animals with a model that reads only the animal ---------------------


@dataclass
class Param:
    id: str


class Synthetic:
    """A split-like set: a red (stretchy) or blue (peaky) square on a grey, noisy background."""

    def __init__(self, n=48, size=24, seed=0):
        rng = np.random.default_rng(seed)
        self.true_labels = rng.integers(0, 2, n)
        images = np.clip(0.5 + 0.08 * rng.standard_normal((n, size, size, 1)), 0, 1).repeat(3, axis=-1)
        self.masks = np.zeros((n, size, size), np.uint8)
        for img, mask, label in zip(images, self.masks, self.true_labels):
            side = rng.integers(6, 10)
            top, left = rng.integers(1, size - side - 1, 2)
            img[top:top + side, left:left + side] = (0.9, 0.2, 0.2) if label else (0.2, 0.2, 0.9)
            mask[top:top + side, left:left + side] = 4
        self.images = (images * 255).round().astype(np.uint8)
        self.params = [Param(f"s{i}") for i in range(n)]
        self.root, self.name = "synthetic", "test"


class AnimalReader(torch.nn.Module):
    """Red minus blue over the image: grey background contributes nothing, only the animal does."""

    def forward(self, x):
        return 60 * (x[:, 0] - x[:, 2]).mean(dim=(1, 2))


def test_morf_with_the_exact_mask_falls_faster_than_random_and_lerf_stays_flat():
    data, model = Synthetic(), AnimalReader()
    n = len(data.params)
    maps = AttributionMaps({"silhouette": (data.masks > 0).astype(np.float32),
                            "random": np.random.default_rng(5).standard_normal(data.masks.shape).astype(np.float32)},
                           [p.id for p in data.params], data.true_labels, np.zeros(n), {})
    result = Faithfulness(model, percentages=(10, 20, 40, 60, 80), reveal_levels=(5, 15, 60)).evaluate(data, maps)
    mask, random = result.road["silhouette"], result.road["random"]
    # MoRF: removing the animal first drops the true class to chance by 20 %; random removal barely moves it.
    assert mask.mean_probability("morf")[1] < 0.6 and random.mean_probability("morf")[1] > 0.9
    assert mask.area(mask.mean_probability("morf")) < random.area(random.mean_probability("morf")) - 0.3
    # LeRF: the background goes first, and grey filled with grey leaves the answer where it was.
    assert mask.mean_probability("lerf").min() > 0.95 and mask.accuracy("lerf").min() == 1.0
    assert mask.summary()["road_probability_gap"] > random.summary()["road_probability_gap"] + 0.3
    # Showing only the top 15 %: the animal (about 11 % of the image) is all there for the mask, not for random.
    assert result.reveal["silhouette"].accuracy[1] == 1.0
    assert result.reveal["silhouette"].cross_entropy[1] < result.reveal["random"].cross_entropy[1]


def test_curves_are_written_as_csv_markdown_and_a_plot(tmp_path):
    data, model = Synthetic(n=12), AnimalReader()
    maps = AttributionMaps({"silhouette": (data.masks > 0).astype(np.float32)}, [p.id for p in data.params],
                           data.true_labels, np.zeros(12), {})
    result = Faithfulness(model, percentages=(20, 50), reveal_levels=(5, 60)).evaluate(data, maps)
    paths = result.write(tmp_path)
    rows = paths["csv"].read_text().splitlines()
    assert rows[0] == "method,curve,percent,accuracy,true_class_probability,cross_entropy"
    assert len(rows) == 1 + 2 * 2 + 2
    assert "silhouette (control)" in paths["md"].read_text()
    assert paths["png"].stat().st_size > 5000
    maps.ids = maps.ids[::-1]
    with pytest.raises(FaithfulnessError, match="not the first 12"):
        Faithfulness(model).evaluate(data, maps)
