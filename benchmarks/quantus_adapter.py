"""Three Quantus metrics (localisation, faithfulness, randomisation) run through two4two's adapter
on a trained model and rendered images with exact masks, each printed beside our own score of the
same family for the same maps.

    python benchmarks/quantus_adapter.py [--model runs/benchmark/models/small_cnn-0/model.pt]
        [--data runs/benchmark/data/test] [--split deletion] [--images 50] [--methods gradient integrated_gradients]

The defaults are the bias benchmark's unbiased small CNN and its deletion images (each also rendered
without every single block, for our single-deletion score): `two4two benchmark configs/benchmark.yaml
-o runs/benchmark` makes both. Relevance mass must agree to rounding: the same definition on the same
maps. The other two pairs measure the same property differently (see the printed notes).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/benchmark/models/small_cnn-0/model.pt")
    parser.add_argument("--data", default="runs/benchmark/data/test")
    parser.add_argument("--split", default="deletion")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--methods", nargs="+", default=["gradient", "integrated_gradients", "grad_cam"])
    args = parser.parse_args()

    import quantus

    from two4two.explain.attribution_scores import (
        SINGLE_BLOCKS, cascading_randomisation, class_logit, part_masses, region_masks, relevance_mass_accuracy,
        removal_drops, single_deletion)
    from two4two.explain.quantus_adapter import explain_func, quantus_inputs, quantus_model
    from two4two.models.training import load_classifier
    from two4two.split import Split

    model, split = load_classifier(args.model), Split(args.data, args.split)
    n = min(args.images, len(split))
    logits = split.logits(model)[:n]
    targets = (logits > 0).astype(np.int64)
    removals = {block: split.removal(block) for block in SINGLE_BLOCKS}
    drops = removal_drops(model, removals, [p.id for p in split.params[:n]], class_logit(logits, targets), targets)
    drops = np.stack([drops[b] for b in SINGLE_BLOCKS], axis=1)
    print(f"{args.model} on {args.data} split {args.split}: {n} images, target = the model's prediction")
    print("| method | Quantus relevance mass (animal) | ours | Quantus faithfulness correlation | ours: single deletion ρ "
          "| Quantus MPRT ρ after all layers | ours: sanity |ρ| after all layers | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        start = time.perf_counter()
        batch = quantus_inputs(model, split, region="animal", n=n, method=method)
        call = dict(model=quantus_model(model), **batch, explain_func=explain_func, explain_func_kwargs={"method": method})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mass = np.asarray(quantus.RelevanceMassAccuracy(abs=True, normalise=False, disable_warnings=True)(**call))
            faithful = np.asarray(quantus.FaithfulnessCorrelation(
                nr_runs=50, subset_size=128, perturb_baseline="black", abs=False, normalise=False,
                return_aggregate=False, disable_warnings=True)(**call))
            mprt = np.asarray(quantus.MPRT(layer_order="top_down", return_last_correlation=True,
                                           disable_warnings=True)(**{**call, "a_batch": None}))
        maps = batch["a_batch"][:, 0]
        ours_mass = relevance_mass_accuracy(maps, region_masks(split.masks[:n], "animal"))
        ours_deletion = single_deletion(part_masses(maps, split.masks[:n], SINGLE_BLOCKS), drops)
        sanity = cascading_randomisation(model, method, split.images[:n], targets, split.masks[:n])[-1]["spearman_abs"]
        assert np.allclose(mass, ours_mass, atol=1e-5), (method, np.abs(mass - ours_mass).max())
        print(f"| {method} | {np.mean(mass):.4f} | {np.mean(ours_mass):.4f} | {np.nanmean(faithful):.3f} | "
              f"{np.nanmean(ours_deletion):.3f} | {np.nanmean(mprt):.3f} | {sanity:.3f} | {time.perf_counter() - start:.0f} |")
    print("\nRelevance mass: the same definition on the same maps, equal per image (asserted). Faithfulness: Quantus "
          "correlates the map's sum over 50 random 128-pixel subsets with the drop of the model's output for the explained class when they are set to black; "
          "ours correlates each of 8 blocks' map mass with the drop when the block is removed and re-rendered. "
          "Randomisation: Quantus re-draws every layer's weights from its own distribution and compares the maps as "
          "they come out; ours re-initialises each block as torch does and compares |maps| (Spearman).")


if __name__ == "__main__":
    main()
