"""Quantus metrics of three families (localisation, faithfulness, randomisation) through the adapter,
on images with exact masks, with one value checked against our own score for the same maps."""

import warnings

import numpy as np
import pytest

pytestmark = [pytest.mark.dev, pytest.mark.models]


class PlantedSplit:
    """What the adapter reads of a Split: 12 images of a bright square (the 'animal') on noise."""

    def __init__(self, n=12, size=32, seed=0):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 120, (n, size, size, 3), dtype=np.uint8)
        self.masks = np.zeros((n, size, size), np.uint8)
        for i in range(n):
            top, left = rng.integers(2, size - 14, 2)
            self.masks[i, top:top + 12, left:left + 12] = 4
            self.masks[i, top:top + 4, left:left + 12] = 7  # a second block label inside the square
            self.images[i, top:top + 12, left:left + 12] = 230
        self.true_labels = (np.arange(n) % 2).astype(np.int64)

    def logits(self, model):
        import torch

        with torch.no_grad():
            return model(torch.from_numpy(self.images).permute(0, 3, 1, 2).float() / 255).numpy()


@pytest.fixture(scope="module")
def model():
    import torch

    from two4two.models.classifier import build_classifier

    torch.manual_seed(0)
    return build_classifier("small_cnn", width=4).eval()


def test_inputs_are_quantus_shaped_with_the_exact_region_as_s_batch(model):
    from two4two.explain.attribution_scores import region_masks
    from two4two.explain.quantus_adapter import quantus_inputs

    split = PlantedSplit()
    batch = quantus_inputs(model, split, region="right_legs", n=5, target="true")
    assert batch["x_batch"].shape == (5, 3, 32, 32) and batch["x_batch"].dtype == np.float32
    assert np.array_equal(np.round(batch["x_batch"] * 255).astype(np.uint8), split.images[:5].transpose(0, 3, 1, 2))
    assert np.array_equal(batch["y_batch"], split.true_labels[:5])
    assert np.array_equal(batch["s_batch"][:, 0].astype(bool), region_masks(split.masks[:5], "right_legs"))
    predicted = quantus_inputs(model, split, n=5)["y_batch"]
    assert np.array_equal(predicted, (split.logits(model)[:5] > 0).astype(np.int64))
    with pytest.raises(ValueError, match="target: 'best'; allowed: predicted, true"):
        quantus_inputs(model, split, target="best")


def test_explain_func_gives_our_maps_for_the_quantus_model_and_for_ours(model):
    from two4two.explain.attribution import attribution_method
    from two4two.explain.quantus_adapter import explain_func, quantus_inputs, quantus_model

    split = PlantedSplit()
    batch = quantus_inputs(model, split, n=4)
    ours = attribution_method("input_x_gradient", model).attribute(split.images[:4], batch["y_batch"])
    for given in (quantus_model(model), model):
        maps = explain_func(given, batch["x_batch"], batch["y_batch"], method="input_x_gradient")
        assert maps.shape == (4, 1, 32, 32)
        assert np.allclose(maps[:, 0], ours, atol=1e-6)


def test_three_quantus_families_run_and_relevance_mass_equals_ours(model):
    import quantus

    from two4two.explain.attribution_scores import region_masks, relevance_mass_accuracy
    from two4two.explain.quantus_adapter import explain_func, quantus_inputs, quantus_model

    split = PlantedSplit()
    batch = quantus_inputs(model, split, region="animal", method="gradient")
    wrapped = quantus_model(model)
    call = dict(model=wrapped, **batch, explain_func=explain_func, explain_func_kwargs={"method": "gradient"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mass = np.asarray(quantus.RelevanceMassAccuracy(abs=True, normalise=False, disable_warnings=True)(**call))
        faithful = np.asarray(quantus.FaithfulnessCorrelation(nr_runs=10, subset_size=64, perturb_baseline="black",
                                                              abs=False, normalise=False, return_aggregate=False,
                                                              disable_warnings=True)(**call))
        randomised = quantus.MPRT(layer_order="bottom_up", return_last_correlation=True, disable_warnings=True)(
            **{**call, "a_batch": None})
    ours = relevance_mass_accuracy(batch["a_batch"][:, 0], region_masks(split.masks, "animal"))
    assert mass.shape == (12,) and np.allclose(mass, ours, atol=1e-5)
    assert 0 < mass.mean() < 1
    assert faithful.shape == (12,) and np.isfinite(faithful).all() and (np.abs(faithful) <= 1).all()
    last = np.asarray(randomised)
    assert last.shape == (12,) and np.isfinite(last).all() and (np.abs(last) <= 1).all()
