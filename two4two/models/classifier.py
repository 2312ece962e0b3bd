"""Binary Peeky/Stretchy classifiers: one logit per image (> 0 means Stretchy).

`small_cnn` trains on a 2-core CPU in minutes at 64 px; `resnet18` and `mobilenet_v2`
(torchvision, trained from scratch) are there for GPUs; `vit` is a small vision transformer
(torchvision's, 8-px patches: 64 tokens at 64 px) and `hybrid_vit` one on convolutional tokens,
the bias benchmark's third family (the plain one does not learn the animals from its data); `inn`
is the invertible classifier of `two4two.models.inn` (counterfactuals).
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = ("small_cnn", "resnet18", "mobilenet_v2", "vit", "hybrid_vit", "inn")
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


class HybridViT(nn.Module):
    """A vision transformer on convolutional tokens, the "hybrid" of Dosovitskiy et al. (ICLR 2021, §3.1):
    the small CNN's stem and first two stages turn the image into one token per 8-px patch (8 × 8 at
    64 px, as a ViT with 8-px patches has), learned position embeddings are added, `num_layers`
    pre-norm transformer layers attend across them, and the tokens' mean (global average pooling,
    which Beyer et al. 2022 prefer to a class token) feeds the logit.

    Why not `vit`: trained from scratch on the bias benchmark's 2 000 images, the plain patch
    projection stays at chance (its loss never leaves ln 2), with or without a convolutional stem;
    these tokens and the pooled readout learn the animals (docs/benchmark.md has the experiments).
    """

    def __init__(self, image_size: int = 64, width: int = 16, num_layers: int = 4, num_heads: int = 4,
                 hidden_dim: int = 128, mlp_dim: int = 256, dropout: float = 0.0):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"image_size: {image_size}; allowed: a multiple of 8 (one token per 8-px patch)")
        cnn = SmallCNN(width=width)
        self.tokenizer = nn.Sequential(cnn.stem, cnn.stage1, cnn.stage2, nn.Conv2d(4 * width, hidden_dim, 1))
        self.position = nn.Parameter(torch.randn(1, (image_size // 8) ** 2, hidden_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden_dim, num_heads, mlp_dim, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_dim)
        self.head = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenizer(x).flatten(2).transpose(1, 2) + self.position
        return self.head(self.norm(self.encoder(tokens)).mean(dim=1)).squeeze(1)


class _SqueezeLogit(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def build_classifier(arch: str = "small_cnn", **kwargs) -> nn.Module:
    """A freshly initialised classifier mapping images (B×3×H×W in [0, 1]) to B logits."""
    if arch == "small_cnn":
        return SmallCNN(**kwargs)
    if arch in ("resnet18", "mobilenet_v2"):
        import torchvision

        return _SqueezeLogit(getattr(torchvision.models, arch)(weights=None, num_classes=1, **kwargs))
    if arch == "vit":
        from torchvision.models import VisionTransformer

        return _SqueezeLogit(VisionTransformer(num_classes=1, **{**VIT_DEFAULTS, **kwargs}))
    if arch == "hybrid_vit":
        return HybridViT(**kwargs)
    if arch == "inn":
        from two4two.models.inn import InvertibleClassifier

        return InvertibleClassifier(**kwargs)
    raise ValueError(f"arch: {arch!r} is not a classifier; allowed: {', '.join(ARCHITECTURES)}")
