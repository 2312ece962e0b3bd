"""The trial paradigms end to end on real renders, with simulated participants.

    python benchmarks/study_paradigms.py [--per-condition 40] [--overwrite]

1. Renders the study pool if missing (configs/study_pool_64px.yaml) and exports the three
   bundles (configs/study_reveal.yaml, study_accept_reject.yaml, study_guess.yaml) for the small
   CNN of benchmarks/paper_tables.py, timing each export.
2. Serves each bundle and takes a screenshot of its first trial page in Chromium
   (docs/study_trial_<paradigm>.png) when Debian's Chromium and Playwright are here.
3. Simulates participants with one planted effect per paradigm (SIMULATED people: the figures
   show what the analysis recovers, not what real people do), analyses them with each paper's
   statistics and draws the figures (docs/study_<paradigm>.png).
4. Puts the small CNN's automatic attribution scores (benchmarks/attribution.py) beside the
   simulated human measures (docs/study_report.png).

Everything goes to docs/study_paradigms.md. Finished bundles are reused (resumable).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
OUT = ROOT / "benchmarks" / "results" / "study_paradigms"
DOCS = ROOT / "docs"
CONFIGS = {"progressive_reveal": "configs/study_reveal.yaml", "accept_reject": "configs/study_accept_reject.yaml",
           "guess_output": "configs/study_guess.yaml"}
PLANTED = {"progressive_reveal": ["guided_backprop@15=0.3"], "accept_reject": ["knn=0.1"], "guess_output": ["grad_cam=-0.1"]}
SCORES = ROOT / "benchmarks" / "results" / "attribution" / "cnn" / "scores_with_faithfulness" / "attribution_scores.csv"


def screenshot(bundle_dir: Path, path: Path) -> str:
    """The first trial page of a fresh participant, as a PNG; returns what happened."""
    try:
        from browser_fixtures import CHROMIUM, launch
        from playwright.sync_api import expect  # noqa: F401
    except ImportError as exc:
        return f"no screenshot ({exc})"
    if not CHROMIUM.exists():
        return f"no screenshot ({CHROMIUM} is missing)"
    from study_fixtures import ManualClock, running_server

    from two4two.study.app import create_app
    from two4two.study.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    db = OUT / f"screenshot_{bundle.paradigm}.sqlite"
    db.unlink(missing_ok=True)
    with running_server(create_app(bundle, db, clock=ManualClock(), rng=random.Random(0))) as url, launch() as browser:
        page = browser.new_context(viewport={"width": 1150, "height": 760}).new_page()
        page.goto(url + "/")
        page.get_by_role("button", name="I agree and want to take part").click()
        while page.locator("main").get_attribute("data-page") != "trial":
            if page.locator("main").get_attribute("data-page") == "comprehension":
                for q in bundle.condition(bundle.condition_names[0]).comprehension:
                    page.get_by_label(q.answer, exact=True).check()
            page.locator("button").first.click()
        page.screenshot(path=str(path), full_page=True)
    db.unlink(missing_ok=True)
    return f"screenshot: {path.relative_to(ROOT)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-condition", type=int, default=40, help="simulated participants per condition (default 40)")
    parser.add_argument("--overwrite", action="store_true", help="export the bundles again")
    args = parser.parse_args()

    from two4two.cli import main as cli
    from two4two.dataset import ensure
    from two4two.study.bundle import load_bundle

    OUT.mkdir(parents=True, exist_ok=True)
    lines = ["# The trial paradigms on the small CNN, with simulated participants", "",
             "Written by `python benchmarks/study_paradigms.py` on this 2-core CPU. The participants are **simulated** "
             "(`two4two study simulate --bundle ... --effect ...`): each figure shows what the paradigm's analysis "
             "recovers from a planted effect, not what real people do. The bundles and the automatic scores are real.", ""]
    start = time.perf_counter()
    ensure(ROOT / "configs" / "study_pool_64px.yaml")
    lines += [f"Study pool (configs/study_pool_64px.yaml) ready after {time.perf_counter() - start:.0f} s.", ""]
    analyses = []
    for paradigm, config in CONFIGS.items():
        bundle_dir = OUT / "bundles" / paradigm
        start = time.perf_counter()
        if args.overwrite or not (bundle_dir / "manifest.json").exists():
            shutil.rmtree(bundle_dir, ignore_errors=True)
            assert cli(["study", "bundle", str(ROOT / config), "-o", str(bundle_dir)]) == 0
        bundle = load_bundle(bundle_dir)
        exported = time.perf_counter() - start
        shot = screenshot(bundle_dir, DOCS / f"study_trial_{paradigm}.png")
        simulated, analysis = OUT / f"{paradigm}_simulated", OUT / f"{paradigm}_analysis"
        assert cli(["study", "simulate", "--bundle", str(bundle_dir), "--per-condition", str(args.per_condition), "--seed", "0",
                    "--too-fast-share", "0.02", "--effect", *PLANTED[paradigm], "-o", str(simulated)]) == 0
        responses = simulated / "responses.csv"
        extra = ["--scores", str(SCORES)] if SCORES.exists() else []
        assert cli(["study", "analyze", str(responses), "--bundle", str(bundle_dir), *extra, "-o", str(analysis)]) == 0
        shutil.copyfile(analysis / "figure.png", DOCS / f"study_{paradigm}.png")
        analyses.append(analysis)
        facts = bundle.facts
        lines += [f"## {paradigm} ({config})", "",
                  f"Bundle: {len(bundle.trials)} trials, {sum(len(t.steps) for t in bundle.trials)} pages, "
                  f"{len(bundle.image_paths)} images; conditions {', '.join(bundle.condition_names)}; each participant draws "
                  f"{bundle.order.trials_per_participant} ({', '.join(f'{g} {n}' for g, n in bundle.order.draw.items())}). "
                  f"Export {exported:.0f} s{' (reused)' if exported < 1 else ''}; {shot}.", ""]
        if "ai_alone" in facts:
            ai = facts["ai_alone"]
            lines += [f"AI alone: accept when confidence ≥ {ai['threshold']} (validation accuracy {ai['validation_accuracy']:.3f}, "
                      f"pool test {ai['test_accuracy']:.3f}); bins' shares of the pool: "
                      + ", ".join(f"{b} {v:.3f}" for b, v in facts["bin_shares"].items()) + ".", ""]
        lines += [f"![trial page of {paradigm}](study_trial_{paradigm}.png)", "",
                  f"Planted: {' '.join(PLANTED[paradigm])}, {args.per_condition} simulated participants per condition, 2 % "
                  "too-fast answers.", "", (analysis / "analysis.md").read_text().replace("## ", "### "),
                  f"![analysis of {paradigm}](study_{paradigm}.png)", ""]
        print(f"{paradigm}: export {exported:.1f} s, {shot}")
    if SCORES.exists():
        report = OUT / "report"
        assert cli(["study", "report", "--scores", str(SCORES), "--analysis", *map(str, analyses), "-o", str(report)]) == 0
        shutil.copyfile(report / "report.png", DOCS / "study_report.png")
        lines += ["## Automatic scores beside the (simulated) human measures", "",
                  (report / "report.md").read_text().replace("## ", "### "), "![report](study_report.png)", ""]
    (DOCS / "study_paradigms.md").write_text("\n".join(lines))
    print(json.dumps({"written": "docs/study_paradigms.md"}))


if __name__ == "__main__":
    main()
