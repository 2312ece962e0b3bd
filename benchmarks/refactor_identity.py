"""Same outputs before and after a refactor: the quickstart dataset, an importance table and an
attribution score table, hashed; with --before REV, the same measured on a checkout of REV.

    python benchmarks/refactor_identity.py [--before REV] [--work DIR]

Both sides read one fixed dataset and one fixed model: the quickstart dataset is rendered by
each side (its files must hash alike), while the tables are computed by each side's code from
the data and the small CNN trained once into DIR (training is not part of what is compared).
Prints one line per item, `same` or `DIFFERENT`, and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gradient", "input_x_gradient", "integrated_gradients", "grad_cam", "occlusion", "lrp", "random", "sobel", "silhouette")


def tree_hash(root: Path) -> str:
    """SHA-256 over every file's path and bytes, the manifest's run-dependent fields left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (".lock", "overview_train.png")):
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            data = json.dumps({k: v for k, v in manifest.items() if k in ("config", "format", "counts", "render", "fingerprint")},
                              sort_keys=True).encode()
        digest.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def measure(work: Path, side: str) -> dict[str, str]:
    """This checkout's outputs (run with PYTHONPATH at the checkout measured)."""
    from two4two.explain.attribution import Attributions
    from two4two.explain.attribution_scores import AttributionEvaluation
    from two4two.importance import Importance
    from two4two.models.training import load_classifier
    from two4two.split import Split

    data = work / f"quickstart_{side}"
    subprocess.run([sys.executable, "-m", "two4two.cli", "render", str(ROOT / "configs/quickstart.yaml"), "-o", str(data),
                    "--workers", "2", "--overwrite"], check=True, env=os.environ, stdout=subprocess.DEVNULL)
    out = {"quickstart dataset": tree_hash(data)}
    model = load_classifier(work / "model" / "model.pt")
    test = Split(work / "quickstart_fixed", "test")
    importance = Importance(model, n_resamples=200, model_name="small_cnn").evaluate(test)
    out["importance table"] = hashlib.sha256(importance.format_table().encode()).hexdigest()
    maps = Attributions(model, METHODS, images=24).explain(test)
    scores = AttributionEvaluation(model, n_resamples=200, sanity_images=4).evaluate(test, maps, attributes=("obj_color", "bg_color"))
    out["attribution score table"] = hashlib.sha256(scores.format_table().encode()).hexdigest()
    (work / f"tables_{side}.md").write_text(importance.format_table() + "\n\n" + scores.format_table() + "\n")
    return out


def prepare(work: Path) -> None:
    """The fixed data (quickstart, rendered by this checkout) and a small CNN trained on it, once."""
    import yaml

    from two4two.models.training import parse_model_config, train_model

    fixed = work / "quickstart_fixed"
    if not (fixed / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "two4two.cli", "render", str(ROOT / "configs/quickstart.yaml"), "-o", str(fixed),
                        "--workers", "2"], check=True, stdout=subprocess.DEVNULL)
    if not (work / "model" / "model.pt").exists():
        raw = yaml.safe_load(f"""
kind: classifier
name: identity_cnn
data: {fixed}
model: {{arch: small_cnn, width: 8}}
training: {{epochs: 3, batch_size: 32, learning_rate: 0.003, seed: 0, validation_split: test}}
output_dir: {work / 'model'}
""")
        train_model(parse_model_config(raw, "identity"), progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git revision to compare this checkout with")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "refactor_identity")
    parser.add_argument("--side", default="after", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.side != "after":  # the child run inside the other checkout
        print(json.dumps(measure(args.work, args.side)))
        return
    prepare(args.work)
    after = measure(args.work, "after")
    if not args.before:
        print(json.dumps(after, indent=1))
        return
    checkout = Path(tempfile.gettempdir()) / "two4two_identity" / f"checkout_{args.before}"  # outside the repository's tree
    if not checkout.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(checkout), args.before], check=True)
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    result = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--side", "before"], env=env, cwd=checkout,
                            check=True, stdout=subprocess.PIPE, text=True)
    before = json.loads(result.stdout.strip().splitlines()[-1])
    differ = False
    for key, value in after.items():
        same = before.get(key) == value
        differ |= not same
        print(f"{key}: {'same' if same else 'DIFFERENT'} (before {before.get(key, '-')[:16]}, after {value[:16]})")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
