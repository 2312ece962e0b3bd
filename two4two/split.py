"""Split: one split of a rendered dataset, read once, with each model's logits cached.

Every measurement and explanation works on a `Split`, so a command that runs several of
them (`study bundle`: importance, answer key, three stimuli, tutorial images) reads the
images and computes a model's logits once.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from two4two.dataset import DatasetError, load_split_arrays, read_split
from two4two.layout import has_split, intervention_split, load_mask, read_split_checksums, removal_split
from two4two.parameters import SceneParameters


class Split:
    def __init__(self, root: str | Path, name: str = "test", progress: bool = False):
        self.root, self.name, self.progress = Path(root), name, progress
        if not has_split(self.root, name):
            raise DatasetError(f"{self.root}: no split {name!r}")
        self._logits: dict[int, tuple[Any, np.ndarray]] = {}
        self._interventions: dict[str, Split] = {}

    def __repr__(self) -> str:
        return f"Split({str(self.root)!r}, {self.name!r})"

    def __len__(self) -> int:
        return len(self.params)

    @cached_property
    def params(self) -> list[SceneParameters]:
        return read_split(self.root, self.name)

    @cached_property
    def images(self) -> np.ndarray:
        """Every image, uint8 N × H × W × 3, in the order of `params`."""
        images, params = load_split_arrays(self.root, self.name, progress=self.progress)
        self.__dict__.setdefault("params", params)
        return images

    @cached_property
    def masks(self) -> np.ndarray:
        """Every mask, uint8 N × H × W of block labels (0 background, 1 + index in BLOCK_NAMES)."""
        sums = read_split_checksums(self.root, self.name)
        return np.stack([load_mask(self.root, self.name, p.id, sums.get(p.id, {}).get("mask")) for p in self.params])

    @property
    def true_labels(self) -> np.ndarray:
        return np.array([p.true_label for p in self.params])

    def logits(self, model, batch_size: int = 256) -> np.ndarray:
        """The model's logit per image, computed once per model; a parameter-reading model
        (`reads_parameters = True`, as the tests' planted models) reads the parameters instead."""
        cached = self._logits.get(id(model))
        if cached is not None and cached[0] is model:
            return cached[1]
        if getattr(model, "reads_parameters", False):
            logits = np.asarray(model(self.params), dtype=np.float64)
        else:
            from two4two.models.training import predict_logits

            logits = predict_logits(model, self.images, batch_size)
        self._logits[id(model)] = (model, logits)  # the model is kept, so its id is not reused
        return logits

    def require_interventions(self, attributes) -> None:
        """Raise one error naming every attribute whose intervention split of this split is not rendered."""
        missing = [a for a in attributes if not has_split(self.root, intervention_split(self.name, a))]
        if missing:
            raise DatasetError(
                f"{self.root}: no intervention split for {', '.join(missing)} of {self.name!r}; render them with "
                f"two4two evaluate importance --create-interventions (or list them under splits.{self.name}.interventions in the config)"
            )

    def intervention(self, attribute: str) -> "Split":
        """The split of this one's originals with `attribute` intervened on (cached)."""
        if attribute not in self._interventions:
            self.require_interventions([attribute])
            self._interventions[attribute] = Split(self.root, intervention_split(self.name, attribute), self.progress)
        return self._interventions[attribute]

    def removal(self, group: str) -> "Split":
        """This split's originals re-rendered without block group `group` (two4two.animal.BLOCK_GROUPS)."""
        name = removal_split(self.name, group)
        if not has_split(self.root, name):
            raise DatasetError(f"{self.root}: no part-removal split {name!r}; render it with "
                               f"two4two evaluate attributions (it renders the removals it needs)")
        return Split(self.root, name, self.progress)
