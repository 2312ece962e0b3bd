"""Our renders beside the original Two4Two renderer's, for the same parameters, on every pixel.

    python benchmarks/fidelity.py [--experiments] [--figure docs/fidelity_sweeps.png]
                                  [--before-after DIR --figure-before-after docs/fringes_before_after.png]

Prints, for each of the 59 reference images in tests/data/original-128 and in summary (mean
and worst image): silhouette IoU, block-label agreement on the union of both silhouettes, mean
absolute RGB difference (of 255) over the background (> 2 px from either silhouette), over
the animal's interior (> 2 px inside both) and over the edge ring those two leave out (pixels
within 1 px of either silhouette's edge), and over the whole image the pixels more than 40/255
darker or brighter than the original with the largest such difference. The same at 64 px,
against the original's 128 px images averaged 2 × 2. Then the noise figure: the standard
deviation of flat background patches (20 × 20 px in the corners, away from the animal) of
our shipped render minus a 1024-sample render, and for both renderers the patch's residual
after a quadratic fit (the only figure the original's images allow). `--experiments` adds
the whole-image figures for the alternatives measured (samples, pixel filter, no denoiser)
and the interior difference with the original's physics (no isolation: the background tints
the animal), without bounce light, and at the original's subdivision level 5. Writes the yaw,
pitch, roll and bending sweeps, ours above the original's, as one PNG; with --before-after,
eight 64 px images enlarged 4 ×: those in DIR (images/ID.png rendered by an earlier version
from the same parameters) above ours above the original's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from two4two.fidelity import compare_with, downsampled, load_references
from two4two.parameters import SceneParameters
from two4two.render import RenderSettings, worker_payload

SWEEPS = ["base", "yaw_090", "yaw_180", "yaw_270", "pitch_m30", "pitch_p30", "roll_m45", "roll_p45",
          "bend_m18", "bend_p18"]
CORNERS = [(2, 2), (2, 106), (106, 2), (106, 106)]
BEFORE_AFTER = ["ref_peaky_base", "ref_stretchy_base", "ref_peaky_roll_p45", "ref_stretchy_pitch_m30",
                "ref_peaky_spherical_000", "ref_peaky_objcolor_000", "ref_peaky_bgcolor_095"]
COLUMNS = ("iou", "label_agreement", "background_mad", "interior_mad", "edge_mad", "darker", "brighter",
           "max_deficit", "max_excess")


def render_all(refs, resolution=128, **scene_kwargs):
    from blender_scripts.scene import AnimalScene

    scene = AnimalScene(resolution=(resolution, resolution), **scene_kwargs)
    out = []
    t0 = time.perf_counter()
    for ref in refs:
        payload = worker_payload(SceneParameters.from_dict(ref.params).replace(resolution=(resolution, resolution)))
        out.append(scene.render(payload))
    seconds = (time.perf_counter() - t0) / len(refs)
    scene.close()
    return out, seconds


def scores(refs, renders) -> list[dict]:
    """compare_with() for every reference; at 64 px against the reference averaged 2 × 2."""
    return [compare_with(ref, image, mask) for ref, (image, mask) in zip(refs, renders)]


def whole_image(rows) -> str:
    """One line: the edge ring and the whole image's outliers, mean over images | worst image."""
    v = {k: np.array([r[k] for r in rows], dtype=float) for k in COLUMNS}
    return (f"edge ring MAD {v['edge_mad'].mean():5.2f} | {v['edge_mad'].max():5.2f}   "
            f">40 darker/image {v['darker'].mean():6.2f} | {v['darker'].max():3.0f}   "
            f">40 brighter/image {v['brighter'].mean():5.2f} | {v['brighter'].max():3.0f}   "
            f"largest deficit {v['max_deficit'].max():5.1f}, excess {v['max_excess'].max():5.1f}   "
            f"images with a pixel >60 darker: {int((v['max_deficit'] > 60).sum())}")


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


def print_table(refs, rows) -> None:
    print(f"\n{'id':28s} {'IoU':>6s} {'labels':>7s} {'bg MAD':>7s} {'int MAD':>8s} {'edge MAD':>9s} {'darker':>7s} "
          f"{'brighter':>8s} {'deficit':>8s} {'excess':>7s}  bg_color")
    for ref, m in zip(refs, rows):
        print(f"{ref.id:28s} {m['iou']:6.3f} {m['label_agreement']:7.3f} {m['background_mad']:7.2f} "
              f"{m['interior_mad']:8.2f} {m['edge_mad']:9.2f} {m['darker']:7d} {m['brighter']:8d} "
              f"{m['max_deficit']:8.1f} {m['max_excess']:7.1f}  {ref.params['bg_color']:.2f}")


def print_summary(refs, rows) -> None:
    neutral = [m for ref, m in zip(refs, rows) if 0.4 <= ref.params["bg_color"] <= 0.6]
    print(f"\nsilhouette IoU           {summary(rows, 'iou')}")
    print(f"block-label agreement    {summary(rows, 'label_agreement')}")
    print(f"background MAD (/255)    {summary(rows, 'background_mad')}")
    print(f"interior MAD (/255)      {summary(rows, 'interior_mad')}")
    print(f"  bg_color in [0.4, 0.6] {summary(neutral, 'interior_mad')}  ({len(neutral)} images)")
    print(f"edge ring MAD (/255)     {summary(rows, 'edge_mad')}")
    print(f">40/255 darker, per image   {summary(rows, 'darker')}")
    print(f">40/255 brighter, per image {summary(rows, 'brighter')}")
    print(f"largest deficit (/255)   {summary(rows, 'max_deficit')}")
    print(f"largest excess (/255)    {summary(rows, 'max_excess')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", action="store_true", help="also: the alternatives measured, and the physics variants")
    parser.add_argument("--reference-samples", type=int, default=1024)
    parser.add_argument("--figure", default="docs/fidelity_sweeps.png")
    parser.add_argument("--before-after", type=Path, help="a folder with images/ID.png of an earlier version at 64 px")
    parser.add_argument("--figure-before-after", type=Path, default=Path("docs/fringes_before_after.png"))
    args = parser.parse_args()
    refs = load_references()
    settings = RenderSettings()
    print(f"shipped settings: {settings.to_dict()}, {len(refs)} reference images")
    renders, seconds = render_all(refs, **settings.to_dict())
    rows = scores(refs, renders)
    print("\n== 128 x 128, against the original's renders")
    print_table(refs, rows)
    print_summary(refs, rows)
    print(f"render time {seconds * 1000:.0f} ms/image in one process")

    small, seconds_64 = render_all(refs, resolution=64, **settings.to_dict())
    rows_64 = scores(refs, small)
    print("\n== 64 x 64, against the original's 128 px renders averaged 2 x 2")
    print_summary(refs, rows_64)
    worst = max(zip(refs, rows_64), key=lambda pair: pair[1]["max_deficit"])
    print(f"darkest pixel at 64 px: {worst[1]['max_deficit']:.1f}/255 in {worst[0].id}")
    print(f"render time {seconds_64 * 1000:.0f} ms/image in one process")

    noise(refs, renders, settings, args.reference_samples)
    if args.experiments:
        experiments(refs, settings, {128: rows, 64: rows_64})
    if args.figure:
        figure(refs, renders, Path(args.figure))
    if args.before_after:
        before_after(refs, small, args.before_after, args.figure_before_after)


def noise(refs, renders, settings, reference_samples) -> None:
    draws = [i for i, r in enumerate(refs) if not r.id.startswith("ref_")]
    print(f"\nnoise: flat background patches of the {len(draws)} study2022 draws")
    picked = [refs[i] for i in draws]
    converged, _ = render_all(picked, **{**settings.to_dict(), "samples": reference_samples, "denoise": False})
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


def experiments(refs, settings, shipped_rows: dict) -> None:
    shipped = settings.to_dict()
    print("\nexperiments: the whole image, mean over images | worst image")
    for resolution, rows in shipped_rows.items():
        print(f"   {'shipped':36s} {resolution:3d} px  {whole_image(rows)}")
    variants = {
        "8 samples": {"samples": 8},
        "12 samples": {"samples": 12},
        "14 samples": {"samples": 14},
        "18 samples": {"samples": 18},
        "20 samples": {"samples": 20},
        "1 px box filter (format 2's)": {"pixel_filter_width": 1.0, "pixel_filter_type": "BOX"},
        "no denoiser": {"denoise": False},
        "128 samples, no denoiser": {"samples": 128, "denoise": False},
        "128 samples, no denoiser, 1 px box": {"samples": 128, "denoise": False, "pixel_filter_width": 1.0,
                                               "pixel_filter_type": "BOX"},
    }
    for name, extra in variants.items():
        for resolution in (128, 64):
            renders, seconds = render_all(refs, resolution=resolution, **{**shipped, **extra})
            print(f"   {name:36s} {resolution:3d} px  {whole_image(scores(refs, renders))}  "
                  f"{seconds * 1000:4.0f} ms/image")

    print("\nexperiments: interior MAD (/255), all images | bg_color in [0.4, 0.6]")
    variants = {
        "shipped": {},
        "original's physics (no isolation)": {"isolate": False},
        "no bounce light": {"max_bounces": 0},
        "subdivision level 5": {"subdivision_levels": 5},
        "subdivision level 2 (10 % faster)": {"subdivision_levels": 2},
    }
    for name, extra in variants.items():
        renders, seconds = render_all(refs, **{**shipped, **extra})
        rows = [dict(m, bg=r.params["bg_color"]) for r, m in zip(refs, scores(refs, renders))]
        neutral = [r for r in rows if 0.4 <= r["bg"] <= 0.6]
        print(f"   {name:36s} interior {np.mean([r['interior_mad'] for r in rows]):5.2f} | "
              f"{np.mean([r['interior_mad'] for r in neutral]):5.2f}   IoU {np.mean([r['iou'] for r in rows]):.4f}  "
              f"bg {np.mean([r['background_mad'] for r in rows]):.2f}   {seconds * 1000:.0f} ms/image")


def before_after(refs, small, before_dir: Path, path: Path) -> None:
    """Eight 64 px images enlarged 4 ×: an earlier version's, ours, the original's averaged 2 × 2."""
    from PIL import Image

    from two4two.plotting import pyplot, save_figure

    by_id = {r.id: (r, image) for r, (image, _) in zip(refs, small)}
    picked = BEFORE_AFTER + [r.id for r in refs if not r.id.startswith("ref_")][:8 - len(BEFORE_AFTER)]
    rows = {"before (format 2)": [], "two4two now": [], "original, 128 px averaged 2 × 2": []}
    for ref_id in picked:
        ref, image = by_id[ref_id]
        rows["before (format 2)"].append(np.asarray(Image.open(before_dir / "images" / f"{ref_id}.png").convert("RGB")))
        rows["two4two now"].append(image)
        rows["original, 128 px averaged 2 × 2"].append(np.round(downsampled(ref).image).astype(np.uint8))

    fig, axes = pyplot().subplots(len(rows), len(picked), figsize=(2.4 * len(picked), 2.5 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.imshow(np.kron(image, np.ones((4, 4, 1), np.uint8)), interpolation="nearest")  # 4 × enlarged
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(picked[c].replace("ref_", "").replace("_", " "), fontsize=7)
    save_figure(fig, path, "64 px renders, 4 × enlarged: the dark fringes of format 2 and the faithful edges now", dpi=128)
    print(f"wrote {path}")


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
