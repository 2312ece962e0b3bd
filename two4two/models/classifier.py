"""Binary Peeky/Stretchy classifiers: one logit per image (> 0 means Stretchy).

`small_cnn` trains on a 2-core CPU in minutes at 64 px; `resnet18` and `mobilenet_v2`
(torchvision, trained from scratch) are there for GPUs; `vit` is a small vision transformer
(torchvision's, 8-px patches: 64 tokens at 64 px) for the bias benchmark's third family; `inn`
is the invertible classifier of `two4two.models.inn` (counterfactuals).
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = ("small_cnn", "resnet18", "mobilenet_v2", "vit", "inn")
# A transformer small enough to train from scratch on a 2-core CPU (0.8 M parameters at 64 px).
VIT_DEFAULTS = {"image_size": 64, "patch_size": 8, "num_layers": 4, "num_heads": 4, "hidden_dim": 128, "mlp_dim": 256}


class SmallCNN(nn.Module):
    """A strided stem, four conv-BN-ReLU stages with max-pooling, global pooling, a linear logit.

    Built for CPU training: at 64 px the stem halves the resolution and each stage
    halves it again; `stage2`'s output (8 × 8 at 64 px) is the layer concept
    explanations read.
    """

    def __init__(self, width: int = 16, dropout: float = 0.2):
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width, 8 * width]

        def block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.stem = nn.Sequential(*block(3, chans[0], stride=2))
        self.stage1 = nn.Sequential(*block(chans[0], chans[1]), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(*block(chans[1], chans[2]), nn.MaxPool2d(2))
        self.stage3 = nn.Sequential(*block(chans[2], chans[3]), nn.MaxPool2d(2))
        self.stage4 = nn.Sequential(*block(chans[3], chans[4]))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(chans[4], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage4(self.stage3(self.stage2(self.stage1(self.stem(x)))))
        return self.head(x).squeeze(1)


class _SqueezeLogit(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def build_vit(conv_stem: bool = False, stem_depth: int = 1, **kwargs) -> nn.Module:
    """torchvision's ViT with `VIT_DEFAULTS`. `conv_stem` replaces the one-step patch projection by
    log2(patch_size) 3×3 stride-2 conv-BN-ReLU layers (Xiao et al. 2021, "Early convolutions help
    transformers see better"), the same tokens on the same grid: trained from scratch on a few
    thousand images, the plain patch projection stays at chance here (docs/benchmark.md)."""
    from torchvision.models import VisionTransformer
    from torchvision.models.vision_transformer import ConvStemConfig

    args = {**VIT_DEFAULTS, **kwargs}
    patch = args["patch_size"]
    if conv_stem:
        if patch < 2 or patch & (patch - 1):
            raise ValueError(f"patch_size: {patch} with conv_stem; allowed: a power of two ≥ 2")
        steps = patch.bit_length() - 1  # 8-px patches: three halvings
        widths = [max(8, args["hidden_dim"] >> (steps - i)) for i in range(steps)]
        args["conv_stem_configs"] = [ConvStemConfig(out_channels=w, kernel_size=3, stride=2 if j == 0 else 1)
                                     for w in widths for j in range(stem_depth)]
    return VisionTransformer(num_classes=1, **args)


def build_classifier(arch: str = "small_cnn", **kwargs) -> nn.Module:
    """A freshly initialised classifier mapping images (B×3×H×W in [0, 1]) to B logits."""
    if arch == "small_cnn":
        return SmallCNN(**kwargs)
    if arch in ("resnet18", "mobilenet_v2"):
        import torchvision

        return _SqueezeLogit(getattr(torchvision.models, arch)(weights=None, num_classes=1, **kwargs))
    if arch == "vit":
        return _SqueezeLogit(build_vit(**kwargs))
    if arch == "inn":
        from two4two.models.inn import InvertibleClassifier

        return InvertibleClassifier(**kwargs)
    raise ValueError(f"arch: {arch!r} is not a classifier; allowed: {', '.join(ARCHITECTURES)}")
