"""Our renders beside the original Two4Two renderer's, for the same parameters.

    python benchmarks/fidelity.py [--experiments] [--figure docs/fidelity_sweeps.png]

Prints, for each of the 59 reference images in tests/data/original-128 and in summary:
silhouette IoU, block-label agreement on the union of both silhouettes, mean absolute RGB
difference (of 255) over the background (> 2 px from either silhouette) and over the
animal's interior (> 2 px inside both). Then the noise figure: the standard deviation of
flat background patches (20 × 20 px in the corners, away from the animal) of our shipped
render minus a 1024-sample render, and for both renderers the patch's residual after a
quadratic fit (the only figure the original's images allow). `--experiments` adds the
interior difference with the original's physics (no isolation: the background tints the
animal), without bounce light, and at the original's subdivision level 5. Writes the
yaw, pitch, roll and bending sweeps, ours above the original's, as one PNG.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from two4two.fidelity import compare, load_references
from two4two.parameters import SceneParameters
from two4two.render import RenderSettings, worker_payload

SWEEPS = ["base", "yaw_090", "yaw_180", "yaw_270", "pitch_m30", "pitch_p30", "roll_m45", "roll_p45",
          "bend_m18", "bend_p18"]
CORNERS = [(2, 2), (2, 106), (106, 2), (106, 106)]


def render_all(refs, **scene_kwargs):
    from blender_scripts.scene import AnimalScene

    scene = AnimalScene(resolution=(128, 128), **scene_kwargs)
    out = []
    t0 = time.perf_counter()
    for ref in refs:
        payload = worker_payload(SceneParameters.from_dict(ref.params))
        out.append(scene.render(payload))
    seconds = (time.perf_counter() - t0) / len(refs)
    scene.close()
    return out, seconds


def flat_patches(mask):
    return [(y, x) for y, x in CORNERS if not mask[max(0, y - 4):y + 24, max(0, x - 4):x + 24].any()]


def residual_std(image, patches):
    """Std of a patch around a fitted quadratic surface, per channel, averaged over patches."""
    yy, xx = np.mgrid[0:20, 0:20] / 20.0
    design = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], -1).reshape(-1, 6)
    values = []
    for y, x in patches:
        patch = image[y:y + 20, x:x + 20].astype(np.float64).reshape(-1, 3)
        coef, *_ = np.linalg.lstsq(design, patch, rcond=None)
        values.append((patch - design @ coef).std())
    return float(np.mean(values)) if values else float("nan")


def summary(rows, key):
    v = np.array([r[key] for r in rows])
    return f"mean {v.mean():.4f}  min {v.min():.4f}  max {v.max():.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", action="store_true", help="also: no isolation, no bounces, subdivision 5")
    parser.add_argument("--reference-samples", type=int, default=1024)
    parser.add_argument("--figure", default="docs/fidelity_sweeps.png")
    args = parser.parse_args()
    refs = load_references()
    settings = RenderSettings()
    print(f"shipped settings: {settings.to_dict()}, 128 x 128, {len(refs)} reference images")
    renders, seconds = render_all(refs, **settings.to_dict())
    rows = []
    print(f"\n{'id':28s} {'IoU':>6s} {'labels':>7s} {'bg MAD':>7s} {'int MAD':>8s}  bg_color")
    for ref, (image, mask) in zip(refs, renders):
        m = compare(image, mask, ref.image, ref.mask)
        rows.append({**m, "bg": ref.params["bg_color"]})
        print(f"{ref.id:28s} {m['iou']:6.3f} {m['label_agreement']:7.3f} {m['background_mad']:7.2f} "
              f"{m['interior_mad']:8.2f}  {ref.params['bg_color']:.2f}")
    neutral = [r for r in rows if 0.4 <= r["bg"] <= 0.6]
    print(f"\nsilhouette IoU           {summary(rows, 'iou')}")
    print(f"block-label agreement    {summary(rows, 'label_agreement')}")
    print(f"background MAD (/255)    {summary(rows, 'background_mad')}")
    print(f"interior MAD (/255)      {summary(rows, 'interior_mad')}")
    print(f"  bg_color in [0.4, 0.6] {summary(neutral, 'interior_mad')}  ({len(neutral)} images)")
    print(f"render time {seconds * 1000:.0f} ms/image in one process")

    noise(refs, renders, settings, args.reference_samples)
    if args.experiments:
        experiments(refs, settings)
    if args.figure:
        figure(refs, renders, Path(args.figure))


def noise(refs, renders, settings, reference_samples) -> None:
    draws = [i for i, r in enumerate(refs) if not r.id.startswith("ref_")]
    print(f"\nnoise: flat background patches of the {len(draws)} study2022 draws")
    picked = [refs[i] for i in draws]
    converged, _ = render_all(picked, samples=reference_samples, denoise=False,
                                 subdivision_levels=settings.subdivision_levels, look=settings.look)
    ours_vs_ref, ours_res, orig_res = [], [], []
    for i, (conv_image, _) in zip(draws, converged):
        image, mask = renders[i]
        patches = flat_patches(mask | refs[i].mask)
        if not patches:
            continue
        diffs = [(image[y:y + 20, x:x + 20].astype(float) - conv_image[y:y + 20, x:x + 20]).std() for y, x in patches]
        ours_vs_ref.append(np.mean(diffs))
        ours_res.append(residual_std(image, patches))
        orig_res.append(residual_std(refs[i].image, patches))
    print(f"   ours ({settings.samples} samples, denoised) minus {reference_samples} samples: std {np.mean(ours_vs_ref):.3f} /255")
    print(f"   residual around a quadratic fit: ours {np.mean(ours_res):.3f} /255, "
          f"original (128 samples) {np.mean(orig_res):.3f} /255  (8-bit rounding alone: 0.289)")


def experiments(refs, settings) -> None:
    print("\nexperiments: interior MAD (/255), all images | bg_color in [0.4, 0.6]")
    variants = {
        "shipped": {},
        "original's physics (no isolation)": {"isolate": False},
        "no bounce light": {"max_bounces": 0},
        "subdivision level 5": {"subdivision_levels": 5},
    }
    for name, extra in variants.items():
        kwargs = {**settings.to_dict(), **extra}
        renders, seconds = render_all(refs, **kwargs)
        rows = [dict(compare(i, m, r.image, r.mask), bg=r.params["bg_color"]) for r, (i, m) in zip(refs, renders)]
        neutral = [r for r in rows if 0.4 <= r["bg"] <= 0.6]
        print(f"   {name:36s} interior {np.mean([r['interior_mad'] for r in rows]):5.2f} | "
              f"{np.mean([r['interior_mad'] for r in neutral]):5.2f}   IoU {np.mean([r['iou'] for r in rows]):.4f}  "
              f"bg {np.mean([r['background_mad'] for r in rows]):.2f}   {seconds * 1000:.0f} ms/image")


def figure(refs, renders, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_id = {r.id: (r, out) for r, out in zip(refs, renders)}
    fig, axes = plt.subplots(4, len(SWEEPS), figsize=(1.3 * len(SWEEPS), 1.45 * 4), squeeze=False)
    for col, sweep in enumerate(SWEEPS):
        for block, animal in enumerate(("peaky", "stretchy")):
            ref, (image, _) = by_id[f"ref_{animal}_{sweep}"]
            for k, (picture, who) in enumerate(((image, "two4two"), (ref.image, "original"))):
                ax = axes[2 * block + k, col]
                ax.imshow(picture)
                ax.set_xticks([])
                ax.set_yticks([])
                if col == 0:
                    ax.set_ylabel(f"{who}\n{animal}", fontsize=7)
                if 2 * block + k == 0:
                    ax.set_title(sweep.replace("_", " "), fontsize=8)
    fig.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
