"""Two4TwoDataset: a rendered split as a PyTorch Dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from two4two.layout import DatasetError, load_image, load_mask, read_split, read_split_checksums
from two4two.parameters import BOOLEAN_ATTRIBUTES, CONTINUOUS_RANGES


class Two4TwoDataset:
    """PyTorch Dataset over one split (torch is imported lazily: rendering needs none).

    Each item is a dict: `image` (float C×H×W in [0, 1]), `label` (the stored label, with
    label noise if the sample has labeling_error), `true_label`, `mask` (long H×W) when
    `with_mask`, `targets` (float tensor of the chosen `attributes`) and `id`. Files are
    checked against the checksums their lines record: a damaged file is a DatasetError that
    names it and the repair command, not a decoder's traceback half-way through an epoch.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        attributes: Sequence[str] = (),
        with_mask: bool = True,
        label_noise: bool = True,
        transform=None,
    ):
        self.root = Path(root)
        self.split = split
        self.params = read_split(root, split)
        self.checksums = read_split_checksums(root, split)
        allowed = (*CONTINUOUS_RANGES, *BOOLEAN_ATTRIBUTES)
        for a in attributes:
            if a not in allowed:
                raise DatasetError(f"attributes: {a!r} is not a numeric attribute; allowed: {', '.join(allowed)}")
        self.attributes = tuple(attributes)
        self.with_mask = with_mask
        self.label_noise = label_noise
        self.transform = transform

    def __len__(self) -> int:
        return len(self.params)

    def targets(self) -> np.ndarray:
        """All samples' chosen attributes as an array (n, len(attributes))."""
        return np.array([[float(getattr(p, a)) for a in self.attributes] for p in self.params], dtype=np.float32)

    def __getitem__(self, i: int) -> dict:
        import torch

        p = self.params[i]
        sums = self.checksums.get(p.id, {})
        image = torch.from_numpy(load_image(self.root, self.split, p.id, sums.get("image")).copy()).permute(2, 0, 1).float() / 255
        if self.transform is not None:
            image = self.transform(image)
        item = {
            "image": image,
            "label": p.label if self.label_noise else p.true_label,
            "true_label": p.true_label,
            "targets": torch.tensor([float(getattr(p, a)) for a in self.attributes], dtype=torch.float32),
            "id": p.id,
        }
        if self.with_mask:
            item["mask"] = torch.from_numpy(load_mask(self.root, self.split, p.id, sums.get("mask")).astype(np.int64))
        return item
