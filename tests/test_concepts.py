"""Concept explanations: the factorisation on planted activations, the layers, the figure."""


import numpy as np
import pytest
from extras import imported
from scipy.stats import pearsonr

torch = imported("models", "torch")

from two4two.errors import Two4TwoError  # noqa: E402
from two4two.explain.concepts import concept_layer, fit_concepts, highlight  # noqa: E402
from two4two.models.classifier import build_classifier  # noqa: E402

pytestmark = pytest.mark.models


def planted(n=300, channels=16, size=4, rank=3, logit_component=2, logit_sign=-1.0, noise=0.01, seed=0):
    """Activations mean + Σ_j score_j(position) · v_j (+ noise) and a logit made from one component.

    The components' scales fall (5, 3, 1, …), so the logit's component explains the
    least variance and only the correlation can pick it.
    """
    rng = np.random.default_rng(seed)
    vectors, _ = np.linalg.qr(rng.normal(size=(channels, rank)))
    vectors = vectors.T  # rank × C, orthonormal
    scales = np.array([5.0, 3.0, 1.0, 0.5, 0.25][:rank])
    maps = rng.normal(size=(n, rank, size, size)) * scales[None, :, None, None]
    maps += rng.normal(size=(n, rank, 1, 1)) * scales[None, :, None, None]  # images differ in how much of each they have
    mean = rng.normal(size=channels)
    acts = np.einsum("nkhw,kc->nchw", maps, vectors) + mean[None, :, None, None]
    acts += noise * rng.normal(size=acts.shape)
    logits = logit_sign * maps[:, logit_component].mean(axis=(1, 2)) + 0.1 * rng.normal(size=n)
    return acts, logits, vectors


def test_the_factorisation_reconstructs_a_planted_low_rank_tensor_and_finds_the_logits_component():
    acts, logits, vectors = planted()
    fit = fit_concepts(acts, logits, components=3, keep=1)
    assert fit.explained_variance > 0.999
    rebuilt = fit.reconstruct(fit.score_maps(acts))
    assert np.abs(rebuilt - acts).max() < 0.1  # only the planted noise (σ 0.01) is left
    # The fitted concept vectors span the planted ones, ordered by their planted scale.
    assert np.allclose(np.abs(fit.components @ vectors.T), np.eye(3), atol=0.01)
    # The kept concept is the weakest component, the one the logit was made from,
    # turned so its score rises with the logit although the logit was planted as −score.
    assert fit.kept.tolist() == [2]
    assert fit.components[2] @ vectors[2] < -0.99
    assert fit.r[2] > 0.9 and np.all(fit.r >= 0)
    scores = fit.image_scores(acts)
    assert np.allclose(fit.r, [pearsonr(scores[:, i], logits)[0] for i in range(3)])
    assert np.allclose(fit.p, [pearsonr(scores[:, i], logits)[1] for i in range(3)])
    assert fit.p[2] < 1e-10 and fit.p[0] > 1e-3  # the strongest component is unrelated to the logit


def test_more_components_than_planted_explain_nothing_new_and_rank_by_correlation():
    acts, logits, vectors = planted(rank=3, logit_component=1, logit_sign=1.0, seed=1)
    fit = fit_concepts(acts, logits, components=6, keep=4)
    assert fit.explained_variance_ratio[:3].sum() > 0.999 and fit.explained_variance_ratio[3:].sum() < 0.001
    assert np.all(np.diff(fit.explained_variance_ratio) <= 1e-12)
    assert fit.kept[0] == 1 and abs(fit.components[1] @ vectors[1]) > 0.99
    assert np.all(np.diff(fit.r[fit.kept]) <= 0)  # most correlated first


def test_bad_factorisation_settings_name_the_field():
    acts, logits, _ = planted(n=20)
    with pytest.raises(Two4TwoError, match="components: 17 must be between 1 and the layer's 16 channels"):
        fit_concepts(acts, logits, components=17)
    with pytest.raises(Two4TwoError, match=r"keep: 4 must be between 1 and components \(3\)"):
        fit_concepts(acts, logits, components=3, keep=4)
    with pytest.raises(Two4TwoError, match="logits: 19 values for 20 images"):
        fit_concepts(acts, logits[:-1])
    with pytest.raises(Two4TwoError, match="activations: expected N × C × H × W"):
        fit_concepts(acts[:, :, 0], logits)


@pytest.mark.slow  # builds a ResNet-18 and a 64 px INN
def test_the_concept_layers_are_8x8_at_64_px():
    x = torch.rand(2, 3, 64, 64)
    cnn = build_classifier("small_cnn", width=8).eval()
    name, layer = concept_layer(cnn)
    with torch.no_grad():
        assert name == "stage2" and layer(x).shape == (2, 32, 8, 8)
    inn = build_classifier("inn", resolution=64, levels=4, steps=1, hidden_channels=8, classifier_level=3).eval()
    name, layer = concept_layer(inn)
    with torch.no_grad():
        phi = layer(x)
        assert phi.shape == (2, 48, 8, 8)
        # φ is what the INN's linear head reads: the logit is an affine function of it.
        assert torch.allclose(inn.logit_of_phi(phi), inn(x), atol=1e-5)
    with pytest.raises(Two4TwoError, match="concepts support small_cnn and inn"):
        concept_layer(build_classifier("resnet18"))


def test_highlighting_keeps_the_region_and_dims_the_rest():
    images = np.full((1, 8, 8, 3), 200, np.uint8)
    maps = np.array([[[-1.0, 2.0], [0.0, 0.0]]])  # only the top-right quarter has the concept
    shown = highlight(images, maps, scale=1.0)
    assert shown[0, 0, 7].tolist() == [200, 200, 200]  # the corner of the concept's quarter stays bright
    assert shown[0, 7, 0].tolist() == [50, 50, 50]  # far away: dimmed to a quarter
    assert shown[0, 0, 0].tolist() == [50, 50, 50]  # negative scores are not this pole's region
