"""The paper's baseline explanation: example outputs of the model, binned by its certainty.

Sixt et al. (2022, Figure 1a) showed 50 images in 10 rows × 5 columns. The columns are the
quintiles of the model's logits over a split — each holds 20 % of the logit values, from
"very certain Peeky" to "very certain Stretchy" — and within a column the images are
sorted by logit. Users see what the model does, not why: the baseline other explanations
must beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from two4two.errors import Two4TwoError

QUINTILE_LABELS = ("very certain Peeky", "certain Peeky", "unsure", "certain Stretchy", "very certain Stretchy")


def logit_columns(logits: np.ndarray, columns: int = 5) -> np.ndarray:
    """The column (0 … columns−1) of each logit: equal shares of the values by rank.

    Ranking instead of comparing with quantile values gives every column exactly its share
    (±1) even when logits tie at a boundary.
    """
    logits = np.asarray(logits, float)
    if columns < 1 or len(logits) < columns:
        raise Two4TwoError(f"columns: {columns} must be between 1 and the number of logits ({len(logits)})")
    ranks = np.empty(len(logits), int)
    ranks[np.argsort(logits, kind="stable")] = np.arange(len(logits))
    return ranks * columns // len(logits)


def choose_cells(logits: np.ndarray, rows: int, columns: int = 5, seed: int = 0) -> np.ndarray:
    """rows × columns indices into `logits`: a random sample of each column's share, sorted by logit."""
    logits = np.asarray(logits, float)
    column_of = logit_columns(logits, columns)
    rng = np.random.default_rng(seed)
    cells = np.empty((rows, columns), int)
    for c in range(columns):
        members = np.flatnonzero(column_of == c)
        if len(members) < rows:
            raise Two4TwoError(f"rows: {rows} is more than the {len(members)} images of column {c + 1}; use a larger split or fewer rows")
        chosen = rng.choice(members, size=rows, replace=False)
        cells[:, c] = chosen[np.argsort(logits[chosen], kind="stable")]
    return cells


@dataclass
class BaselineGrid:
    images: np.ndarray  # rows × columns × H × W × 3 uint8
    ids: list[list[str]]  # rows × columns
    logits: np.ndarray  # rows × columns
    labels: tuple[str, ...]  # one per column
    edges: np.ndarray  # columns + 1 logit values: the column boundaries (min, quantiles, max)

    def save(self, path: str | Path, title: str = "What the model predicts (example outputs)", dpi: int = 110) -> dict[str, Path]:
        """The grid as a PNG with one label per column, and the ids and logits per cell as JSON."""
        from two4two.io import atomic_write_json
        from two4two.plotting import save_image_grid

        path = save_image_grid(self.images, self.labels, path, title, dpi=dpi)
        record = {"columns": list(self.labels), "column_edges": self.edges.tolist(), "ids": self.ids, "logits": self.logits.tolist()}
        return {"png": path, "json": atomic_write_json(Path(path).with_suffix(".json"), record)}


class Baseline:
    """Explainer: `rows` × len(labels) images of a split, one column per equal share of the model's logits."""

    def __init__(self, model, rows: int = 10, labels: Sequence[str] = QUINTILE_LABELS):
        if rows < 1:
            raise Two4TwoError(f"rows: {rows} must be at least 1")
        self.model, self.rows, self.labels = model, rows, tuple(labels)

    def explain(self, split, seed: int = 0) -> BaselineGrid:
        logits = split.logits(self.model)
        cells = choose_cells(logits, self.rows, len(self.labels), seed)
        return BaselineGrid(
            images=split.images[cells],
            ids=[[split.params[i].id for i in row] for row in cells],
            logits=logits[cells],
            labels=self.labels,
            edges=np.quantile(logits, np.linspace(0, 1, len(self.labels) + 1)),
        )
