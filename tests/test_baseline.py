"""The baseline grid: columns hold equal shares of the logits, rows are sorted by logit."""

import numpy as np
import pytest

from two4two.errors import Two4TwoError
from two4two.explain.baseline import QUINTILE_LABELS, choose_cells, logit_columns


def test_columns_are_exactly_the_quintiles_of_synthetic_logits():
    rng = np.random.default_rng(3)
    logits = np.concatenate([rng.normal(0, 3, 997), [0.0, 0.0, 0.0]])  # ties included
    column = logit_columns(logits)
    assert np.bincount(column).tolist() == [200] * 5
    edges = np.quantile(logits, [0.2, 0.4, 0.6, 0.8])
    # Every column, the outer two included, lies between its edges (open on the outer side), so
    # column c ends at or below edge c and column c + 1 starts at or above it.
    bounds = [-np.inf, *edges, np.inf]
    for c in range(5):
        values = logits[column == c]
        assert bounds[c] <= values.min() and values.max() <= bounds[c + 1], c
    # 20 % of the values below the first edge, by rank; the lowest logit is very certain Peeky.
    assert column[np.argmin(logits)] == 0 and column[np.argmax(logits)] == 4


def test_uneven_counts_differ_by_at_most_one():
    counts = np.bincount(logit_columns(np.random.default_rng(0).normal(size=103), 5))
    assert counts.max() - counts.min() <= 1 and counts.sum() == 103


def test_cells_come_from_their_column_and_are_sorted_by_logit():
    logits = np.random.default_rng(1).normal(0, 2, 400)
    column = logit_columns(logits)
    cells = choose_cells(logits, rows=10, seed=5)
    assert cells.shape == (10, 5) and len(set(cells.ravel())) == 50
    for c in range(5):
        assert np.all(column[cells[:, c]] == c)
        assert np.all(np.diff(logits[cells[:, c]]) >= 0)
    assert np.array_equal(cells, choose_cells(logits, rows=10, seed=5))
    assert not np.array_equal(cells, choose_cells(logits, rows=10, seed=6))


def test_too_many_rows_or_columns_are_named():
    with pytest.raises(Two4TwoError, match="rows: 30 is more than the 20 images of column 1"):
        choose_cells(np.arange(100.0), rows=30)
    with pytest.raises(Two4TwoError, match="columns: 5 must be between 1 and the number of logits \\(3\\)"):
        logit_columns(np.arange(3.0))


def test_default_labels_name_each_default_column_from_peeky_to_stretchy_symmetrically():
    # One label per column logit_columns makes by default, ...
    assert len(QUINTILE_LABELS) == np.bincount(logit_columns(np.arange(100.0))).size == 5
    # ... running from Peeky (the lowest logits, column 0) to Stretchy, mirrored about the unsure
    # middle: column c and column 4 − c say the same of the other class.
    assert all("Peeky" in label for label in QUINTILE_LABELS[:2]) and all("Stretchy" in label for label in QUINTILE_LABELS[3:])
    assert not {"Peeky", "Stretchy"} & set(QUINTILE_LABELS[2].split())
    for c in range(5):
        assert QUINTILE_LABELS[c].replace("Peeky", "Stretchy") == QUINTILE_LABELS[4 - c].replace("Peeky", "Stretchy")
    assert len(set(QUINTILE_LABELS)) == 5
