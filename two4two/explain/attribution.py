"""Attribution maps: which pixels a classifier's logit depends on, by twelve methods with one verb.

    method = attribution_method("integrated_gradients", model)
    maps = method.attribute(images, target)       # (N, H, W) float32, signed, channels summed

`images` are stored uint8 images (N × H × W × 3); `target` is the class explained per image
(0 peaky, 1 stretchy; one int for all). Our classifiers return one logit z for stretchy, so
class 1 is explained through z and class 0 through −z: a positive map value always means
"this pixel speaks for the target class".

The gradient methods are captum's (pinned in the `models` extra). Three controls need no
model: `random` (i.i.d. normal noise), `sobel` (the image's edge magnitude: what a map that
only sees edges would show) and `silhouette` (the animal's exact mask, the "salient object"
baseline of Nguyen et al. 2021; it needs the masks). LRP uses captum's rules (ε for every
layer) and supports the small CNN only: captum has no rule for ResNet-18's skip connections,
MobileNetV2's ReLU6 or the INN's couplings, and says so with a clear error here. DeepLift
runs on all but ResNet-18, whose blocks call one ReLU module twice, which captum's DeepLift
refuses.

Integrated gradients, DeepLift and occlusion compare the image with a baseline that stands
for "nothing here". `baseline="auto"` (the default) takes black for feed-forward classifiers,
as Sundararajan et al. do, and mid-grey for the INN: its encoder divides by the couplings'
scales, which overflows on images far from the data (a constant image at ≤ 0.05 encodes to
NaN, one at 0.5 does not), so a path from black crosses images it cannot encode. A map with
a non-finite value is refused with an error naming the method, never returned.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from two4two.errors import Two4TwoError

class AttributionError(Two4TwoError, ValueError):
    """A method cannot explain this model, or its inputs are not what it needs."""


def check_methods(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise AttributionError(f"{unknown[0]!r} is not an attribution method; allowed: {', '.join(REGISTRY)}")
    return list(dict.fromkeys(names))


# ---- the model as captum sees it ------------------------------------------------------


def _torch():
    import torch

    return torch


def is_invertible(model) -> bool:
    return hasattr(model, "encode") and hasattr(model, "logit_of_phi")


def _two_class(model):
    """An nn.Module returning (N, 2) = (−z, z), so captum's `target` is the class index.

    The INN is wrapped as encoder → head, so a layer method can hook φ (its encoder is
    called as a module; the INN's own forward calls its blocks' `inverse`, which no hook sees).
    """
    torch = _torch()
    nn = torch.nn

    class Encoder(nn.Module):
        def __init__(self, inn):
            super().__init__()
            self.inn = inn

        def forward(self, x):
            return self.inn.encode(x).phi

    class TwoClass(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.invertible = is_invertible(net)
            if self.invertible:
                self.encoder = Encoder(net)
            else:
                self.net = net

        def forward(self, x):
            z = (self.encoder.inn.logit_of_phi(self.encoder(x)) if self.invertible else self.net(x)).reshape(-1)
            return torch.stack([-z, z], dim=1)

    net = copy.deepcopy(model).eval()
    for module in net.modules():  # captum's hooks (DeepLift, guided backprop, LRP) need out-of-place ReLUs
        if isinstance(module, nn.ReLU):
            module.inplace = False
    for p in net.parameters():
        p.requires_grad_(False)
    return TwoClass(net).eval()


def last_conv_stage(wrapped):
    """The layer Grad-CAM weights: the last convolutional stage (φ for the INN)."""
    if wrapped.invertible:
        return wrapped.encoder
    net = wrapped.net
    inner = getattr(net, "net", None)
    # small CNN, ResNet-18, MobileNetV2, the hybrid ViT (its convolutional tokens, before any attention)
    for owner, stage in ((net, "stage4"), (inner, "layer4"), (inner, "features"), (net, "tokenizer")):
        if hasattr(owner, stage):
            return getattr(owner, stage)
    raise AttributionError(f"grad_cam: no known last convolutional stage in {type(inner if inner is not None else net).__name__}")


def cascade_layers(model) -> list[tuple[str, object]]:
    """The model's parameterised top-level blocks from the output down (Adebayo et al.'s cascade order)."""
    if is_invertible(model):  # one flow level at a time; the levels after φ do not reach the logit
        levels = [(f"level{i + 1}", level) for i, level in enumerate(model.levels[: model.classifier_level])]
        return [("head", model.head)] + levels[::-1]
    root = getattr(model, "net", model)
    children = [(name, m) for name, m in root.named_children() if any(True for _ in m.parameters())]
    return children[::-1]


def randomised(model, layers: int, seed: int = 0):
    """A copy of `model` with its top `layers` blocks of `cascade_layers` re-initialised."""
    torch = _torch()
    out = copy.deepcopy(model)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for _, block in cascade_layers(out)[:layers]:
            for m in block.modules():
                for reset in ("reset_parameters", "reset_running_stats"):
                    if hasattr(m, reset):
                        getattr(m, reset)()
            for p in block.parameters():  # layers that keep a zero init (Glow's last conv) get noise too
                if not p.abs().sum():
                    p.data.normal_(0, 0.05)
    finally:
        torch.random.set_rng_state(generator_state)
    return out.eval()


# ---- the methods: one class each, registered by name ---------------------------------


REGISTRY: dict[str, type["AttributionMethod"]] = {}
BASELINES = {"black": 0.0, "grey": 0.5}  # input value ([0, 1]) of "nothing here"; "auto" picks one per model


class AttributionMethod:
    """One method bound to one model: `attribute(images, target, masks=None) -> (N, H, W) float32`.

    A subclass names itself (`name`, `label`), declares its own options as keyword arguments of
    `__init__`, and computes one batch in `_batch`; the method lists below are read off the classes.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    captum: ClassVar[str] = ""  # the captum.attr class that explains the wrapped model, unless `_build` says otherwise
    needs_model: ClassVar[bool] = True
    uses_baseline: ClassVar[bool] = False  # compares the image with "nothing here" (`baseline`)
    default: ClassVar[bool] = True  # in the default lists; False for a method only some architectures have

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY[cls.name] = cls

    def __init__(self, model=None, *, batch_size: int = 32, progress: bool = False, seed: int = 0,
                 baseline: str = "auto"):
        if baseline != "auto" and baseline not in BASELINES:
            raise AttributionError(f"baseline: {baseline!r} is not one of auto, {', '.join(BASELINES)}")
        self.model, self.batch_size, self.progress, self.seed, self.baseline = model, batch_size, progress, seed, baseline
        self._wrapped = None
        if self.needs_model:
            if model is None:
                raise AttributionError(f"{self.name}: needs a model")
            self._wrapped = _two_class(model)
            self._explainer = self._build(self._wrapped)

    @classmethod
    def option_names(cls) -> set[str]:
        """The keyword options this method takes (its own and the shared ones)."""
        return {n for k in cls.__mro__ if "__init__" in k.__dict__
                for n, p in inspect.signature(k.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY}

    @property
    def baseline_value(self) -> float:
        """The input value that stands for "nothing here" in this method's comparisons."""
        if self.baseline == "auto":
            return BASELINES["grey" if self._wrapped is not None and self._wrapped.invertible else "black"]
        return BASELINES[self.baseline]

    def _build(self, wrapped):
        return getattr(_captum(), self.captum)(wrapped)

    def attribute(self, images: np.ndarray, target, masks: np.ndarray | None = None) -> np.ndarray:
        """Signed maps (N, H, W) float32, the channels summed, for images (N, H, W, 3): uint8 as stored,
        or float in [0, 1] (what Quantus's perturbed inputs are)."""
        images = np.asarray(images)
        floating = np.issubdtype(images.dtype, np.floating)
        if images.ndim != 4 or images.shape[-1] != 3 or not (images.dtype == np.uint8 or floating):
            raise AttributionError(f"{self.name}: expected images N × H × W × 3, uint8 or float in [0, 1], got {images.dtype} {images.shape}")
        if floating and images.size and not (images.min() >= 0 and images.max() <= 1):
            raise AttributionError(f"{self.name}: float images must lie in [0, 1], got [{images.min():g}, {images.max():g}]")
        targets = np.broadcast_to(np.asarray(target, dtype=np.int64), (len(images),))
        if not np.isin(targets, (0, 1)).all():
            raise AttributionError(f"{self.name}: target must be 0 (peaky) or 1 (stretchy), got {np.unique(targets)}")
        return self._maps(images, targets, masks)

    def _maps(self, images: np.ndarray, targets: np.ndarray, masks) -> np.ndarray:
        """The model's maps, batch by batch through captum; a non-finite map is an error, never returned."""
        from tqdm import tqdm

        from two4two.models.inputs import image_batch

        torch, n = _torch(), len(images)
        out = np.empty(images.shape[:3], np.float32)
        with tqdm(total=n, desc=self.label, unit="img", disable=not self.progress, leave=False) as bar:
            for start in range(0, n, self.batch_size):
                stop = min(n, start + self.batch_size)
                x = image_batch(images[start:stop]).requires_grad_(True)
                torch.manual_seed(self.seed)
                a = self._batch(x, torch.from_numpy(np.array(targets[start:stop], dtype=np.int64)))
                out[start:stop] = a.detach().sum(dim=1).float().numpy()
                bar.update(stop - start)
        bad = ~np.isfinite(out).all(axis=(1, 2))
        if bad.any():
            hint = (f" (baseline {self.baseline!r} = {self.baseline_value}: try another, e.g. --baseline grey)"
                    if self.uses_baseline else "")
            raise AttributionError(f"{self.name}: the model gives non-finite values on this method's inputs, "
                                   f"{int(bad.sum())} of {n} maps are not finite{hint}")
        return out

    def _batch(self, x, t):
        return self._explainer.attribute(x, target=t)


def _captum():
    from captum import attr

    return attr


class Gradient(AttributionMethod):
    name, label, captum = "gradient", "gradient", "Saliency"

    def _batch(self, x, t):  # signed: captum's Saliency takes |·| unless told not to
        return self._explainer.attribute(x, target=t, abs=False)


class InputXGradient(AttributionMethod):
    name, label, captum = "input_x_gradient", "input × gradient", "InputXGradient"


def is_transformer(wrapped) -> bool:
    """A model with attention layers (the benchmark's ViT): GELU, no ReLU, products of two inputs."""
    return any(isinstance(m, _torch().nn.MultiheadAttention) for m in wrapped.modules())


class GuidedBackprop(AttributionMethod):
    name, label, captum = "guided_backprop", "guided backprop", "GuidedBackprop"

    def _build(self, wrapped):
        if is_transformer(wrapped):
            raise AttributionError("guided_backprop: guides the gradient through ReLUs, and a vision transformer's attention "
                                   "and MLP layers have none (GELU): its map would be close to the plain gradient")
        return super()._build(wrapped)


class IntegratedGradients(AttributionMethod):
    name, label, captum, uses_baseline = "integrated_gradients", "integrated gradients", "IntegratedGradients", True

    def __init__(self, model=None, *, ig_steps: int = 16, **shared):
        self.ig_steps = ig_steps
        super().__init__(model, **shared)

    def _batch(self, x, t):
        return self._explainer.attribute(x, baselines=self.baseline_value, target=t, n_steps=self.ig_steps,
                                         internal_batch_size=len(x))


class SmoothGrad(AttributionMethod):
    name, label, captum = "smoothgrad", "SmoothGrad", "Saliency"

    def __init__(self, model=None, *, smoothgrad_samples: int = 10, smoothgrad_sigma: float = 0.15, **shared):
        # sigma: of the [0, 1] input range (Smilkov et al. use 10–20 %)
        self.smoothgrad_samples, self.smoothgrad_sigma = smoothgrad_samples, smoothgrad_sigma
        super().__init__(model, **shared)

    def _build(self, wrapped):
        return _captum().NoiseTunnel(super()._build(wrapped))

    def _batch(self, x, t):
        return self._explainer.attribute(x, nt_type="smoothgrad", nt_samples=self.smoothgrad_samples,
                                         nt_samples_batch_size=self.smoothgrad_samples, stdevs=self.smoothgrad_sigma,
                                         target=t, abs=False)


class GradCAM(AttributionMethod):
    name, label = "grad_cam", "Grad-CAM"

    def _build(self, wrapped):
        return _captum().LayerGradCam(wrapped, last_conv_stage(wrapped))

    def _batch(self, x, t):
        cam = self._explainer.attribute(x, target=t, relu_attributions=True)
        return _torch().nn.functional.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)


class Occlusion(AttributionMethod):
    name, label, captum, uses_baseline = "occlusion", "occlusion", "Occlusion", True

    def __init__(self, model=None, *, occlusion_window: int | None = None, **shared):
        self.occlusion_window = occlusion_window  # default: an eighth of the image side, stride = window
        super().__init__(model, **shared)

    def _batch(self, x, t):
        side = self.occlusion_window or max(2, x.shape[2] // 8)  # 64 non-overlapping patches of the baseline
        return self._explainer.attribute(x.detach(), sliding_window_shapes=(3, side, side), strides=(3, side, side),
                                         baselines=self.baseline_value, target=t, perturbations_per_eval=4)


class LRP(AttributionMethod):
    name, label, captum = "lrp", "LRP", "LRP"

    def _build(self, wrapped):
        from captum.attr._utils.lrp_rules import EpsilonRule

        torch = _torch()
        net = None if wrapped.invertible else wrapped.net
        if net is None or not hasattr(net, "stage4"):
            kind = "the INN" if wrapped.invertible else type(getattr(net, "net", net)).__name__
            raise AttributionError(f"lrp: captum's LRP rules support the small CNN only, not {kind} "
                                   "(no rule for skip connections, ReLU6 or couplings)")
        # captum's rules keep each layer's shape, so the head's Flatten + Linear become the same
        # map as a 1 × 1 convolution (the logit is unchanged; SmallCNN squeezes what is left).
        head = [m for m in net.head if not isinstance(m, torch.nn.Flatten)]
        for i, m in enumerate(head):
            if isinstance(m, torch.nn.Linear):
                conv = torch.nn.Conv2d(m.in_features, m.out_features, 1)
                conv.weight.data.copy_(m.weight.data[:, :, None, None])
                conv.bias.data.copy_(m.bias.data)
                conv.requires_grad_(False)
                head[i] = conv
        net.head = torch.nn.Sequential(*head)
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)):
                m.rule = EpsilonRule(epsilon=1e-6)
        return super()._build(wrapped)

    def _batch(self, x, t):
        # captum's LRP starts from the target output's value but passes relevance through the
        # wrapper's negation unchanged, so column 0 (−z) would give z's map. LRP-ε is linear in
        # the starting relevance: class 0's map is −(z's map).
        sign = _torch().where(t == 1, 1.0, -1.0)[:, None, None, None]
        return self._explainer.attribute(x, target=_torch().ones_like(t)) * sign


class ZennitLRP(AttributionMethod):
    """LRP through residual blocks: zennit's ResNet canonizer makes each skip connection's sum a
    module a rule can hold (captum's LRP has none), and batch norms are merged into their convolutions."""

    name, label, default = "lrp_epsilon_plus", "LRP ε+♭ (zennit)", False

    def _build(self, wrapped):
        from zennit.canonizers import SequentialMergeBatchNorm
        from zennit.composites import EpsilonPlusFlat
        from zennit.torchvision import ResNetCanonizer

        inner = None if wrapped.invertible else getattr(wrapped.net, "net", wrapped.net)
        if hasattr(inner, "layer4"):
            canonizer = ResNetCanonizer()
        elif hasattr(inner, "stage4"):
            canonizer = SequentialMergeBatchNorm()
        else:
            kind = "the INN" if wrapped.invertible else type(inner).__name__
            raise AttributionError(f"lrp_epsilon_plus: zennit's rules are set here for ResNet-18 and the small CNN only, "
                                   f"not {kind} (no rule for couplings, ReLU6 or attention)")
        return EpsilonPlusFlat(canonizers=[canonizer])

    def _batch(self, x, t):
        from zennit.attribution import Gradient

        torch = _torch()
        # the relevance starts as z (as captum's LRP starts from the output); the rules are linear
        # in it, so class 0's map (explained through −z) is −(z's map)
        with Gradient(model=self._wrapped, composite=self._explainer) as attributor:
            _, relevance = attributor(x, lambda out: out * torch.tensor([0.0, 1.0]))
        return relevance * torch.where(t == 1, 1.0, -1.0)[:, None, None, None]


class AttentionRollout(AttributionMethod):
    """The transformer's own account: attention rolled out through the layers, each layer's
    heads weighted by the gradient of the explained class (Chefer, Gur & Wolf 2021, ICCV,
    "Generic attention-model explainability"), the class token's row read as patch relevance."""

    name, label, default = "attention_rollout", "attention rollout (gradient-weighted)", False

    def _build(self, wrapped):
        if not is_transformer(wrapped):
            kind = "the INN" if wrapped.invertible else type(getattr(wrapped.net, "net", wrapped.net)).__name__
            raise AttributionError(f"attention_rollout: needs attention layers, and {kind} has none")
        self._weights = []
        self._class_token = any(hasattr(m, "class_token") for m in wrapped.modules())
        for m in wrapped.modules():  # (the wrapped model is this method's own copy)
            if isinstance(m, _torch().nn.MultiheadAttention):
                m.forward = self._attention(m)
        return None

    def _attention(self, m):
        """The layer's self-attention written out, so each head's weights are a tensor of the graph
        whose gradient can be read (torch's returns a copy the output does not depend on)."""
        torch = _torch()

        def attend(query, key, value, need_weights=False, **unused):
            n, tokens, width = query.shape
            q, k, v = torch.nn.functional.linear(query, m.in_proj_weight, m.in_proj_bias).reshape(
                n, tokens, 3, m.num_heads, width // m.num_heads).permute(2, 0, 3, 1, 4)
            weights = torch.softmax(q @ k.transpose(-2, -1) / (width // m.num_heads) ** 0.5, dim=-1)
            if weights.requires_grad:
                weights.retain_grad()
            self._weights.append(weights)  # N × heads × tokens × tokens
            return m.out_proj((weights @ v).transpose(1, 2).reshape(n, tokens, width)), None

        return attend

    def _batch(self, x, t):
        torch = _torch()
        self._weights.clear()
        self._wrapped(x).gather(1, t[:, None]).sum().backward()
        tokens = self._weights[0].shape[-1]
        rollout = torch.eye(tokens).expand(len(x), tokens, tokens)
        for a in self._weights:
            rollout = rollout + (a.grad * a).clamp(min=0).mean(dim=1) @ rollout
        if self._class_token:  # the class token's relevance of each patch
            patches = rollout[:, 0, 1:]
        else:  # pooled tokens (the hybrid ViT): the logit reads every token's row alike
            patches = rollout.mean(dim=1)
        side = int(round(patches.shape[1] ** 0.5))
        grid = patches.reshape(len(x), 1, side, side).detach()
        return torch.nn.functional.interpolate(grid, size=x.shape[2:], mode="nearest")


class DeepLift(AttributionMethod):
    name, label, captum, uses_baseline = "deeplift", "DeepLift", "DeepLift", True

    def _build(self, wrapped):
        if not wrapped.invertible and hasattr(getattr(wrapped.net, "net", None), "layer4"):
            raise AttributionError("deeplift: captum's DeepLift needs every ReLU module to be called once, and "
                                   "torchvision's ResNet-18 calls each block's ReLU twice; use integrated_gradients")
        if is_transformer(wrapped):
            raise AttributionError("deeplift: captum's DeepLift has no rule for attention (a product of two inputs) "
                                   "or GELU; use integrated_gradients")
        return super()._build(wrapped)

    def _batch(self, x, t):
        return self._explainer.attribute(x, baselines=self.baseline_value, target=t)


class RandomControl(AttributionMethod):
    name, label, needs_model = "random", "random (control)", False

    def _maps(self, images, targets, masks):
        return np.random.default_rng(self.seed).standard_normal(images.shape[:3]).astype(np.float32)


class SobelControl(AttributionMethod):
    name, label, needs_model = "sobel", "Sobel edges (control)", False

    def _maps(self, images, targets, masks):
        return sobel_edges(images)


class SilhouetteControl(AttributionMethod):
    name, label, needs_model = "silhouette", "silhouette (control)", False

    def _maps(self, images, targets, masks):
        if masks is None or np.shape(masks) != images.shape[:3]:
            raise AttributionError(f"silhouette: needs the masks (N × H × W) of the images, got "
                                   f"{None if masks is None else np.shape(masks)}")
        return (np.asarray(masks) > 0).astype(np.float32)


METHODS = tuple(REGISTRY)
DEFAULT_METHODS = tuple(n for n, c in REGISTRY.items() if c.default)  # what `explain attributions` runs unless told
CONTROLS = tuple(n for n, c in REGISTRY.items() if not c.needs_model)
LABELS = {n: c.label for n, c in REGISTRY.items()}


def heatmap_overlay(images: np.ndarray, maps: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """uint8 images with each map's positive part (scaled to its maximum) laid over in the "jet"
    colours heatmaps are usually shown in: what a participant sees as "where the system looked"."""
    from matplotlib import colormaps

    positive = np.clip(np.asarray(maps, np.float64), 0, None)
    top = positive.reshape(len(positive), -1).max(axis=1)
    scaled = positive / np.where(top > 0, top, 1.0)[:, None, None]
    colours = colormaps["jet"](scaled)[..., :3]
    weight = alpha * np.sqrt(scaled)[..., None]  # faint where the map is near zero
    out = (1 - weight) * (images.astype(np.float64) / 255) + weight * colours
    return (out.clip(0, 1) * 255).round().astype(np.uint8)


def sobel_edges(images: np.ndarray) -> np.ndarray:
    """Edge magnitude of each image's luminance (scipy's Sobel): a map that sees only the image."""
    from scipy import ndimage

    grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    gx = ndimage.sobel(grey, axis=2, mode="nearest")
    gy = ndimage.sobel(grey, axis=1, mode="nearest")
    return np.hypot(gx, gy).astype(np.float32)


def attribution_method(name: str, model=None, **options) -> AttributionMethod:
    """Method `name` bound to `model`, given those of `options` it takes (the others are other methods')."""
    cls = REGISTRY[check_methods([name])[0]]
    known = set().union(*(c.option_names() for c in REGISTRY.values()))
    unknown = sorted(set(options) - known)
    if unknown:
        raise AttributionError(f"{unknown[0]}: not an option of any attribution method; allowed: {', '.join(sorted(known))}")
    return cls(model, **{k: v for k, v in options.items() if k in cls.option_names()})


# ---- maps of a split, saved ---------------------------------------------------------


MAPS_FILE = "attributions.npz"


@dataclass
class AttributionMaps:
    """Every method's maps of one split's images, with what they explain."""

    maps: dict[str, np.ndarray]  # method → (N, H, W) float32
    ids: list[str]
    targets: np.ndarray
    logits: np.ndarray
    seconds: dict[str, float]
    images: np.ndarray | None = None
    masks: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def save(self, out_dir: str | Path, rows: int = 6) -> dict[str, Path]:
        """Compressed float16 maps (`attributions.npz`), their meta data and the overlay grid PNG; atomic."""
        import json

        from two4two.io import atomic_write, atomic_write_text

        out = Path(out_dir)
        arrays = {f"map_{m}": a.astype(np.float16) for m, a in self.maps.items()}
        arrays.update(ids=np.array(self.ids), targets=self.targets.astype(np.int8), logits=self.logits.astype(np.float32))
        meta = {**self.meta, "methods": list(self.maps), "seconds": self.seconds, "n": len(self.ids)}
        paths = {"npz": atomic_write(out / MAPS_FILE, lambda fh: np.savez_compressed(fh, **arrays)),
                 "json": atomic_write_text(out / "attributions.json", json.dumps(meta, indent=2) + "\n")}
        if self.images is not None:
            paths["png"] = overlay_grid(self, out / "attributions.png", rows)
        return paths


def load_maps(path: str | Path) -> AttributionMaps:
    """Maps written by `AttributionMaps.save` (a directory or its npz)."""
    import json

    path = Path(path)
    npz = path / MAPS_FILE if path.is_dir() else path
    if not npz.is_file():
        raise AttributionError(f"{npz}: no attribution maps; write them with two4two explain attributions")
    with np.load(npz, allow_pickle=False) as data:
        maps = {k[4:]: data[k].astype(np.float32) for k in data.files if k.startswith("map_")}
        ids, targets, logits = data["ids"].tolist(), data["targets"].astype(np.int64), data["logits"].astype(np.float64)
    meta_path = npz.with_name("attributions.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return AttributionMaps(maps, ids, targets, logits, meta.get("seconds", {}), meta=meta)


def overlay_grid(maps: AttributionMaps, path: Path, rows: int = 6) -> Path:
    """Rows: images; columns: the image, then each method's map over it, the mask's outline drawn."""
    from two4two.io import atomic_write_bytes
    from two4two.plotting import figure_png, pyplot

    plt = pyplot()
    methods = list(maps.maps)
    rows = min(rows, len(maps.ids))
    fig, axes = plt.subplots(rows, len(methods) + 1, figsize=(1.3 * (len(methods) + 1), 1.35 * rows + 0.4), squeeze=False)
    for r in range(rows):
        image = maps.images[r]
        axes[r, 0].imshow(image)
        axes[r, 0].set_ylabel(f"{'stretchy' if maps.targets[r] else 'peaky'}\nz={maps.logits[r]:+.1f}", fontsize=7)
        for c, m in enumerate(methods, start=1):
            a = maps.maps[m][r]
            limit = float(np.abs(a).max()) or 1.0
            axes[r, c].imshow(image.mean(axis=2), cmap="gray", vmin=0, vmax=255)
            axes[r, c].imshow(a, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.75)
            if maps.masks is not None:
                axes[r, c].contour(maps.masks[r] > 0, levels=[0.5], colors="k", linewidths=0.5)
            if r == 0:
                axes[r, c].set_title(LABELS[m].replace(" (control)", "\n(control)"), fontsize=7)
        for ax in axes[r]:
            ax.set(xticks=[], yticks=[])
    axes[0, 0].set_title("image", fontsize=7)
    fig.suptitle("attribution maps (red: for the explained class, blue: against; black: the animal's outline)", fontsize=8)
    return atomic_write_bytes(path, figure_png(fig, dpi=110))


class Attributions:
    """`two4two explain attributions`: every chosen method on a split's images (first `images` of them)."""

    def __init__(self, model, methods: Sequence[str] = DEFAULT_METHODS, images: int | None = None, target: str = "predicted",
                 progress: bool = False, **options):
        if target not in ("predicted", "true"):
            raise AttributionError(f"target: expected predicted or true, got {target!r}")
        self.model, self.methods, self.n, self.target = model, check_methods(methods), images, target
        self.progress, self.options = progress, options

    def explain(self, split, seed: int = 0) -> AttributionMaps:
        import time

        n = len(split) if self.n is None else min(self.n, len(split))
        images, masks = split.images[:n], split.masks[:n]
        logits = split.logits(self.model)[:n]
        targets = (logits > 0).astype(np.int64) if self.target == "predicted" else split.true_labels[:n]
        maps, seconds = {}, {}
        for name in self.methods:
            start = time.perf_counter()
            method = attribution_method(name, self.model, progress=self.progress, seed=seed, **self.options)
            maps[name] = method.attribute(images, targets, masks)
            seconds[name] = time.perf_counter() - start
        meta = {"data": str(split.root), "split": split.name, "target": self.target}
        return AttributionMaps(maps, [p.id for p in split.params[:n]], targets, logits, seconds, images, masks, meta)
