"""The invertible classifier: exact inverse, exact log-determinant, counterfactuals that hit their target."""

import math

import numpy as np
import pytest
from extras import imported

torch = imported("models", "torch")
imported("models", "normflows")

from two4two.explain.counterfactual import counterfactuals, require_invertible, spanning_quantiles, target_logits  # noqa: E402
from two4two.errors import Two4TwoError  # noqa: E402
from two4two.models.classifier import build_classifier  # noqa: E402
from two4two.models.inn import InvertibleClassifier  # noqa: E402

pytestmark = pytest.mark.models


def randomised_flow(dtype=torch.float64, seed=0, **kwargs) -> InvertibleClassifier:
    """A small flow whose every layer does something: actnorm initialised on data, then all
    parameters jittered (a fresh Glow coupling starts as the identity)."""
    torch.manual_seed(seed)
    args = dict(resolution=16, levels=3, steps=2, hidden_channels=8, classifier_level=2)
    args.update(kwargs)
    model = InvertibleClassifier(**args).to(dtype)
    model.log_prob(torch.rand(8, 3, args["resolution"], args["resolution"], dtype=dtype))  # actnorm data init, every level
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_inverse_of_forward_reconstructs_the_image():
    model = randomised_flow()
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    enc = model.encode(x)
    assert enc.phi.shape == (4, *model.phi_shape) == (4, 24, 4, 4)
    assert not torch.allclose(enc.phi.flatten(1)[:, :48], x.flatten(1)[:, :48] - 0.5, atol=1e-2)  # not the identity
    assert (model.decode(enc.phi, enc.faded) - x).abs().max() < 1e-4


@pytest.mark.parametrize("scale_map", ["sigmoid_inv", "sigmoid", "exp", "bounded"])
def test_log_determinant_matches_the_brute_force_jacobian(scale_map):
    model = randomised_flow(resolution=4, levels=2, classifier_level=1, seed=1, scale_map=scale_map)
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)

    def whole_code(flat):
        latents, _ = model.latent_code(flat.view(1, 3, 4, 4))
        return torch.cat([z.flatten() for z in latents])

    jacobian = torch.autograd.functional.jacobian(whole_code, x.flatten())
    assert jacobian.shape == (48, 48)
    _, log_det = model.latent_code(x)
    sign, brute = torch.linalg.slogdet(jacobian)
    assert sign != 0 and abs(float(log_det) - float(brute)) < 1e-6
    assert abs(float(brute)) > 1e-2  # the map is not volume preserving by accident


def test_additive_couplings_and_1x1_kernels_invert_and_score_exactly():
    """The paper's global code: a last level at 1 × 1 with 1 × 1 coupling networks; additive
    couplings keep only the actnorms' and 1 × 1 convolutions' volume change."""
    model = randomised_flow(resolution=8, levels=3, classifier_level=3, coupling="additive", coupling_kernel=[3, 3, 1], seed=6)
    assert model.phi_shape == (48, 1, 1)

    def kernels(level):
        return {m.kernel_size for m in model.levels[level][0].flows[0].modules() if isinstance(m, torch.nn.Conv2d)}

    assert kernels(2) == {(1, 1)} and kernels(0) == {(3, 3), (1, 1)}
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    enc = model.encode(x)
    assert (model.decode(enc.phi, enc.faded) - x).abs().max() < 1e-8

    def whole_code(flat):
        latents, _ = model.latent_code(flat.view(1, 3, 8, 8))
        return torch.cat([z.flatten() for z in latents])

    jacobian = torch.autograd.functional.jacobian(whole_code, x[:1].flatten())
    _, brute = torch.linalg.slogdet(jacobian)
    _, log_det = model.latent_code(x[:1])
    assert abs(float(log_det) - float(brute)) < 1e-6
    # Additive: a coupling shifts and never scales, so its log-determinant is 0 while it moves values.
    coupling = model.levels[0][0].flows[0]
    z = torch.rand(2, 12, 4, 4, dtype=torch.float64)
    moved, coupling_log_det = coupling(z)
    assert torch.all(coupling_log_det == 0) and (moved - z).abs().max() > 1e-3


def test_phi_inside_a_level_leaves_the_flow_and_moves_only_where_phi_is_read():
    """The paper's φ is layer 641 of 687: inside the last level, with flow steps (μ) after it. The
    same weights with φ read after 2 of the level's 4 steps are the same flow (same density, same
    whole code) with another φ, and φ still inverts to the image."""
    whole = randomised_flow(resolution=8, levels=3, steps=4, classifier_level=3, seed=4)
    inside = InvertibleClassifier(resolution=8, levels=3, steps=4, hidden_channels=8, classifier_level=3, classifier_step=2).double()
    inside.load_state_dict(whole.state_dict())
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    assert torch.allclose(inside.log_prob(x), whole.log_prob(x), atol=1e-9)
    (a, _), (b, _) = inside.latent_code(x), whole.latent_code(x)
    assert all(torch.allclose(p, q, atol=1e-9) for p, q in zip(a, b))
    enc = inside.encode(x)
    assert (enc.phi - whole.encode(x).phi).abs().max() > 1e-3 and inside.phi_shape == whole.phi_shape
    assert (inside.decode(enc.phi, enc.faded) - x).abs().max() < 1e-8
    with pytest.raises(ValueError, match="classifier_step: 5 is outside 1..4"):
        InvertibleClassifier(resolution=8, levels=3, steps=4, classifier_level=3, classifier_step=5)


def test_counterfactuals_reach_their_target_logits_when_re_encoded():
    model = randomised_flow(dtype=torch.float32, seed=2)
    x = torch.rand(3, 3, 16, 16)
    targets = torch.tensor([-4.0, -1.5, 0.0, 0.7, 3.0])
    moved, original = counterfactuals(model, x, targets, batch_size=2)  # two chunks
    assert moved.shape == (3, 5, 3, 16, 16)
    assert torch.allclose(original, model(x), atol=1e-5)
    relogit = model(moved.reshape(15, 3, 16, 16)).reshape(3, 5)
    assert (relogit - targets).abs().max() < 1e-3
    # Only φ moved: each row keeps its image's faded-out half.
    for row in range(3):
        faded = model.encode(moved[row]).faded[0]
        assert torch.allclose(faded, model.encode(x[row : row + 1]).faded[0].expand_as(faded), atol=1e-4)


def test_counterfactuals_take_per_row_targets():
    model = randomised_flow(dtype=torch.float32, seed=3)
    x = torch.rand(2, 3, 16, 16)
    targets = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    moved, _ = counterfactuals(model, x, targets)
    assert (model(moved.reshape(4, 3, 16, 16)).reshape(2, 2) - targets).abs().max() < 1e-3
    with pytest.raises(ValueError, match="targets"):
        counterfactuals(model, x, torch.zeros(3, 2))


def test_the_classifier_reads_only_phi():
    model = randomised_flow(seed=4)
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    before = model(x)
    enc = model.encode(x)
    assert torch.allclose(before, model.head(enc.phi.flatten(1)).squeeze(1))
    # The levels after φ (μ) do not change the logit ...
    with torch.no_grad():
        for p in model.levels[model.classifier_level :].parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert torch.equal(model(x), before)
    # ... and get no gradient from the classification loss, only from the likelihood.
    model.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(model(x), torch.ones(4, dtype=x.dtype)).backward()
    mu_params = list(model.levels[model.classifier_level :].parameters())
    phi_params = list(model.levels[: model.classifier_level].parameters())
    assert all(p.grad is None or not p.grad.any() for p in mu_params)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in phi_params)
    model.zero_grad()
    (-model.log_prob(x).mean()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mu_params)


def test_training_loss_is_bits_per_dimension_plus_weighted_bce():
    model = randomised_flow(dtype=torch.float32, seed=5, beta=2.0)
    x = (torch.randint(0, 256, (6, 3, 16, 16)) / 255).float()
    y = torch.tensor([0, 1, 0, 1, 1, 0]).float()
    torch.manual_seed(0)
    loss, logits, parts = model.training_loss(x, y)
    torch.manual_seed(0)
    x_deq = (x * 255 + torch.rand_like(x)) / 256
    bpd = (-model.log_prob(x_deq) / (3 * 16 * 16) + math.log(256)) / math.log(2)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(model(x_deq), y)
    assert parts["bits_per_dim"] == pytest.approx(float(bpd.mean()), rel=1e-5)
    assert float(loss) == pytest.approx(float(bpd.mean() + 2.0 * bce), rel=1e-5)
    assert 0 < parts["bits_per_dim"] < 30


def test_a_bad_inn_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="classifier_level"):
        InvertibleClassifier(resolution=16, levels=2, classifier_level=3)
    with pytest.raises(ValueError, match="resolution"):
        InvertibleClassifier(resolution=20, levels=3)
    with pytest.raises(ValueError, match="steps"):
        InvertibleClassifier(resolution=16, levels=2, steps=[2, 2, 2])
    with pytest.raises(ValueError, match="scale_map"):
        InvertibleClassifier(resolution=16, levels=2, classifier_level=1, scale_map="tanh")
    with pytest.raises(ValueError, match="coupling_kernel"):
        InvertibleClassifier(resolution=16, levels=2, classifier_level=1, coupling_kernel=5)
    with pytest.raises(ValueError, match="coupling: 'spline'"):
        InvertibleClassifier(resolution=16, levels=2, classifier_level=1, coupling="spline")


def test_only_invertible_models_make_counterfactuals():
    with pytest.raises(Two4TwoError, match="arch: inn"):
        require_invertible(build_classifier("small_cnn", width=4))
    assert require_invertible(build_classifier("inn", resolution=16, levels=2, steps=1, hidden_channels=4, classifier_level=1))


def test_column_targets_are_quantiles_of_the_logits():
    logits = np.arange(101.0)
    assert target_logits(logits, [0.1, 0.5, 0.9]).tolist() == [10.0, 50.0, 90.0]
    assert spanning_quantiles(0.99, 3).tolist() == pytest.approx([0.005, 0.5, 0.995])
    with pytest.raises(Two4TwoError, match="quantiles"):
        target_logits(logits, [1.5])


def test_the_bounded_scale_never_stretches_a_value_more_than_twice():
    """The paper's coupling scale sigmoid(h) + 0.5: however large the network's output, encoding
    and decoding each change a value's scale by less than 2 per step (sigmoid_inv divides by a
    scale that can vanish, which is how a 1 × 1 φ blew up at a learning rate of 10⁻³)."""
    model = randomised_flow(resolution=8, levels=3, classifier_level=3, scale_map="bounded", seed=7)
    coupling = model.levels[0][0].flows[0].flows[1]
    with torch.no_grad():
        for p in coupling.param_map.parameters():
            p.mul_(0).add_(50.0 * torch.randn_like(p))  # outputs in the thousands: sigmoid saturates
    z = [torch.rand(2, 6, 4, 4, dtype=torch.float64) + 1.0, torch.rand(2, 6, 4, 4, dtype=torch.float64) + 1.0]
    (_, encoded), log_det = coupling.inverse(z)
    _, scale = coupling._shift_scale(z[0])
    assert scale.min() > 0.5 - 1e-12 and scale.max() < 1.5 + 1e-12 and (scale - 1).abs().max() > 0.4
    assert torch.all(log_det.abs() <= 6 * 16 * np.log(2))
    (_, decoded), _ = coupling.forward([z[0], encoded])
    assert (decoded - z[1]).abs().max() < 1e-6  # shifts in the thousands: float64 rounding
