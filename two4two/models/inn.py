"""An invertible classifier: a Glow-style multi-scale flow φ with a linear logit on φ(x).

The paper's INN (section 4, appendix A.2) in small: each level squeezes (h, w, c) →
(h/2, w/2, 4c), runs `steps` Glow flow steps (actnorm → LU-decomposed invertible 1 × 1
convolution → affine coupling, from normflows) and fades out half of the channels, which
are scored under N(0, I) and kept for the inverse. The classifier f(x) = wᵀφ(x) + b reads
the full output of level `classifier_level`; the levels after it (μ) turn φ into the rest
of the latent code and are trained on the flow likelihood alone, because the classifier
loss does not depend on them. Counterfactuals move φ(x) along w and invert
(`two4two.explain.counterfactual`).

Images come in as B × 3 × H × W in [0, 1]; `forward` returns the B logits, so the INN is
just another classifier to the training loop and the importance measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from normflows.flows import AffineCouplingBlock, GlowBlock, Squeeze
from normflows.flows.affine.coupling import AffineCoupling
from normflows.nets import ConvNet2d
from torch import nn


@dataclass
class Encoding:
    """φ(x), the faded-out halves of the levels before it, and log|det ∂φ/∂x|."""

    phi: torch.Tensor
    faded: list[torch.Tensor]
    log_det: torch.Tensor


SCALE_MAPS = ("sigmoid_inv", "sigmoid", "exp", "bounded")
COUPLINGS = ("affine", "additive")


def _flow_step(channels: int, hidden: int, coupling: str, scale_map: str, kernel: int):
    """One Glow step from normflows (affine or additive coupling → LU 1 × 1 convolution → actnorm),
    its coupling network of kernels (k, 1, k) with the last layer zero-initialised (the step
    starts as the identity)."""
    scale = coupling == "affine"
    library_map = "sigmoid_inv" if scale_map == "bounded" else scale_map
    step = GlowBlock(channels, hidden, scale=scale, scale_map=library_map)
    if kernel != 3:  # GlowBlock fixes (3, 1, 3); the coupling is its first flow
        sizes = ((channels + 1) // 2, hidden, hidden, (2 if scale else 1) * (channels // 2))
        step.flows[0] = AffineCouplingBlock(ConvNet2d(sizes, (kernel, 1, kernel), 0.0, True), scale, library_map, "channel")
    if scale and scale_map == "bounded":  # split → coupling → merge: swap the coupling, keep its network
        step.flows[0].flows[1] = _BoundedAffineCoupling(step.flows[0].flows[1].param_map)
    return step


class _BoundedAffineCoupling(AffineCoupling):
    """Affine coupling with scale s = sigmoid(h) + 0.5 in (0.5, 1.5), the paper's: neither
    direction can multiply a value by more than 2 per step, so neither training (which
    divides by s) nor a counterfactual's decoding (which multiplies) can blow up through it."""

    def __init__(self, param_map):
        super().__init__(param_map, scale=True, scale_map="bounded")

    def _shift_scale(self, z1):
        param = self.param_map(z1)
        return param[:, 0::2, ...], torch.sigmoid(param[:, 1::2, ...]) + 0.5

    def forward(self, z):  # latent → data (decoding)
        z1, z2 = z
        shift, scale = self._shift_scale(z1)
        return [z1, z2 * scale + shift], torch.log(scale).flatten(1).sum(1)

    def inverse(self, z):  # data → latent (encoding)
        z1, z2 = z
        shift, scale = self._shift_scale(z1)
        return [z1, (z2 - shift) / scale], -torch.log(scale).flatten(1).sum(1)


class InvertibleClassifier(nn.Module):
    """Multi-scale Glow flow with a linear classifier on an intermediate level.

    `steps`, `hidden_channels` and `coupling_kernel` are one value for every level or one
    per level. `beta` weighs the classifier's binary cross-entropy against the likelihood in
    bits per dimension (`training_loss`): the paper's 10⁻⁴ leaves φ a generative code that a
    linear classifier must read, a large β lets the flow serve the logit with changes too
    small to see. `scale_map` is the affine couplings' scale: with "sigmoid_inv" decoding
    multiplies by a scale in (0, 1), so a counterfactual step off the data cannot blow up
    through a division by a vanishing scale (Glow's "sigmoid" divides when decoding), but
    encoding divides by it; "bounded" is the paper's sigmoid(h) + 0.5, in (0.5, 1.5) both ways.
    `coupling="additive"` drops the scale altogether (volume-preserving couplings, NICE's).
    `classifier_step` reads φ after that many steps of the classifier level (default: all); the
    level's later steps belong to μ, as in the paper, whose φ is layer 641 of 687: then φ's
    distribution is shaped by μ rather than forced to the prior itself.
    `coupling_kernel` 1 makes a level's coupling networks 1 × 1 convolutions, as the paper's
    last level at 1 × 1, where a 3 × 3 kernel would see only zero padding around its centre.
    """

    def __init__(
        self,
        resolution: int = 64,
        levels: int = 4,
        steps: int | list[int] = 4,
        hidden_channels: int | list[int] = 64,
        classifier_level: int = 3,
        beta: float = 1.0,
        scale_map: str = "sigmoid_inv",
        coupling: str = "affine",
        coupling_kernel: int | list[int] = 3,
        classifier_step: int | None = None,
    ):
        super().__init__()
        steps_per_level = self._per_level(steps, levels, "steps")
        hidden_per_level = self._per_level(hidden_channels, levels, "hidden_channels")
        kernel_per_level = self._per_level(coupling_kernel, levels, "coupling_kernel")
        if any(k not in (1, 3) for k in kernel_per_level):
            raise ValueError(f"coupling_kernel: expected 1 or 3 (one value or one per level), got {coupling_kernel!r}")
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling: {coupling!r} is not one of {', '.join(COUPLINGS)}")
        if not 1 <= classifier_level <= levels:
            raise ValueError(f"classifier_level: {classifier_level} is outside 1..levels ({levels})")
        at_level = steps_per_level[classifier_level - 1]
        if classifier_step is not None and not 1 <= classifier_step <= at_level:
            raise ValueError(f"classifier_step: {classifier_step} is outside 1..{at_level} (the steps of level {classifier_level})")
        if scale_map not in SCALE_MAPS:
            raise ValueError(f"scale_map: {scale_map!r} is not one of {', '.join(SCALE_MAPS)}")
        if resolution % (2**levels):
            raise ValueError(f"resolution: {resolution} is not divisible by 2**levels ({2 ** levels})")
        self.resolution, self.classifier_level, self.beta = resolution, classifier_level, float(beta)
        self.classifier_step = at_level if classifier_step is None else classifier_step
        self.squeeze = Squeeze()  # its inverse is the data → latent direction: (c, h, w) → (4c, h/2, w/2)
        self.levels = nn.ModuleList()
        channels, size = 3, resolution
        for level in range(levels):
            channels, size = 4 * channels, size // 2
            self.levels.append(nn.ModuleList(
                _flow_step(channels, hidden_per_level[level], coupling, scale_map, kernel_per_level[level])
                for _ in range(steps_per_level[level])
            ))
            if level + 1 == classifier_level:
                self.phi_shape = (channels, size, size)
            if level + 1 < levels:
                channels //= 2  # the other half is faded out
        self.head = nn.Linear(math.prod(self.phi_shape), 1)
        self.input_dims = 3 * resolution * resolution

    @staticmethod
    def _per_level(value, levels: int, name: str) -> list[int]:
        values = list(value) if isinstance(value, (list, tuple)) else [value] * levels
        if len(values) != levels or any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name}: expected a positive int or {levels} of them, got {value!r}")
        return values

    # -- the flow -----------------------------------------------------------------------

    def _steps(self, level: int, part: str = "all"):
        """A level's flow steps; at the classifier level, those before φ ("phi") or after it ("mu")."""
        steps = self.levels[level]
        if level + 1 != self.classifier_level or part == "all":
            return list(steps)
        return list(steps[: self.classifier_step] if part == "phi" else steps[self.classifier_step:])

    def _run_levels(self, h: torch.Tensor, levels: range, part: str):
        """h through `levels` (at the classifier level, only the steps of `part`), fading out half of the channels
        after each level but the last; returns the output, the faded-out halves and log|det|."""
        log_det = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
        faded = []
        for level in levels:
            if part != "mu" or level + 1 != self.classifier_level:  # μ continues the classifier level, unsqueezed
                h, _ = self.squeeze.inverse(h)
            for step in self._steps(level, part):
                h, ld = step.inverse(h)  # normflows' inverse is the data → latent direction
                log_det = log_det + ld
            if level + 1 < levels.stop:
                h, out = h.chunk(2, dim=1)
                faded.append(out)
        return h, faded, log_det

    def encode(self, x: torch.Tensor) -> Encoding:
        """φ(x) for images in [0, 1], with the faded-out halves needed to invert it."""
        return Encoding(*self._run_levels(x - 0.5, range(self.classifier_level), "phi"))

    def decode(self, phi: torch.Tensor, faded: list[torch.Tensor]) -> torch.Tensor:
        """φ⁻¹: the image (in [0, 1] up to the flow's range) for φ and the stored halves."""
        h = phi
        for level in reversed(range(self.classifier_level)):
            if level + 1 < self.classifier_level:
                h = torch.cat([h, faded[level]], dim=1)
            for step in reversed(self._steps(level, "phi")):
                h, _ = step.forward(h)
            h, _ = self.squeeze.forward(h)
        return h + 0.5

    def tail(self, phi: torch.Tensor):
        """μ: the remaining latent parts after φ and their log-determinant."""
        h, latents, log_det = self._run_levels(phi, range(self.classifier_level - 1, len(self.levels)), "mu")
        return latents + [h], log_det

    def latent_code(self, x: torch.Tensor):
        """The whole latent code (every faded-out part, then μ's outputs) and log|det|."""
        enc = self.encode(x)
        latents, log_det = self.tail(enc.phi)
        return enc.faded + latents, enc.log_det + log_det

    def _log_prob_of(self, enc: Encoding) -> torch.Tensor:
        latents, log_det = self.tail(enc.phi)
        prior = sum(-0.5 * (z.flatten(1) ** 2 + math.log(2 * math.pi)).sum(1) for z in enc.faded + latents)  # N(0, I)
        return enc.log_det + log_det + prior

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density of continuous images in [0, 1] under the flow with an N(0, I) prior."""
        return self._log_prob_of(self.encode(x))

    def _bits_per_dim(self, log_p: torch.Tensor) -> torch.Tensor:
        """Bits per dimension of 8-bit images from the log-density of their [0, 1] dequantisation."""
        return (-log_p / self.input_dims + math.log(256)) / math.log(2)

    def bits_per_dim(self, images, batch_size: int = 128, seed: int = 0) -> float:
        """Mean bits per dimension of 8-bit images (N × H × W × 3 uint8), dequantised with a fixed seed."""
        generator = torch.Generator().manual_seed(seed)
        device = self.head.weight.device
        was_training = self.training
        self.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.as_tensor(images[start : start + batch_size]).permute(0, 3, 1, 2).float()
                x = ((x + torch.rand(x.shape, generator=generator)) / 256).to(device)
                total += float(self._bits_per_dim(self.log_prob(x)).sum())
        self.train(was_training)
        return total / max(1, len(images))

    # -- the classifier -----------------------------------------------------------------

    @property
    def weight(self) -> torch.Tensor:
        """w shaped like φ(x): the direction in φ-space that raises the logit."""
        return self.head.weight.view(self.phi_shape)

    def logit_of_phi(self, phi: torch.Tensor) -> torch.Tensor:
        return self.head(phi.flatten(1)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit_of_phi(self.encode(x).phi)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor):
        """Bits per dimension of dequantised x plus β·BCE of the logit; returns (loss, logits, parts)."""
        x = (x * 255 + torch.rand_like(x)) / 256  # uniform dequantisation of 8-bit images
        enc = self.encode(x)
        log_p = self._log_prob_of(enc)
        logits = self.logit_of_phi(enc.phi)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, y)
        bpd = self._bits_per_dim(log_p).mean()
        return bpd + self.beta * bce, logits, {"bits_per_dim": float(bpd.detach()), "bce": float(bce.detach())}
