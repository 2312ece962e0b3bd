"""The bias benchmark: the planted strength, the sweep's statistics, and the tiny config end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from two4two.benchmark import (
    dataset_config,
    detection_auc,
    load_benchmark_config,
    parse_benchmark_config,
    sweep_scores,
)
from two4two.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "benchmark_tiny.yaml"


@pytest.mark.models  # the model configs of each architecture are read by the training code
@pytest.mark.parametrize("path", [p for p in sorted((ROOT / "configs").glob("*.yaml")) if "kind: benchmark" in p.read_text()],
                         ids=lambda p: p.name)
def test_shipped_benchmark_configs_load_with_every_stage_config(path, tmp_path):
    from two4two.benchmark import model_config

    config = load_benchmark_config(path)
    assert len(config.strengths) >= 5 and config.strengths[0] == 0.0
    for k in range(len(config.strengths)):
        assert dataset_config(config, tmp_path, k).splits["train"].n == config.data["train"]
    for arch, k in config.model_names():
        assert model_config(config, tmp_path, arch, k).model["arch"] == config.architectures[arch]["model"]["arch"]
    # the in-domain removal model: the unbiased data again, the same draws, blocks removed at the rate
    removal = dataset_config(config, tmp_path, 0, removal=True)
    assert removal.splits["train"].part_removal.rate == config.removal_rate > 0
    assert removal.output_dir != dataset_config(config, tmp_path, 0).output_dir
    assert dataset_config(config, tmp_path, None).splits["deletion"].n == config.images
    assert model_config(config, tmp_path, config.removal_arch, 0, removal=True).data == removal.output_dir


def _raw(**changes) -> dict:
    raw = {k: v for k, v in load_benchmark_config(TINY).raw.items() if k != "in_domain_removal"}
    return {**raw, **changes}


@pytest.mark.parametrize("change, message", [
    ({"bias": {"attribute": "arm_position", "range": [0, 1], "strengths": [0, 1]}}, "bias.attribute: expected one of"),
    ({"bias": {"attribute": "bg_color", "range": [0.05, 0.95], "strengths": [0.5, 0.2]}},
     "bias.strengths: expected at least two increasing shares in \\[0, 1\\], got \\[0.5, 0.2\\]"),
    ({"bias": {"attribute": "bg_color", "range": [0.9, 0.1], "strengths": [0, 1]}}, "bias.range: expected \\[low, high\\] with low < high"),
    ({"methods": ["gradient", "magic"]}, "methods: 'magic' is not an attribution method; allowed: gradient"),
    ({"images": 1}, "images: expected an integer ≥ 2, got 1"),
    ({"colour": 1}, "colour: unknown key; allowed: bias, data, architectures, kind"),
    ({"in_domain_removal": {"architecture": "resnet50", "rate": 0.5}},
     "in_domain_removal.architecture: expected one of small_cnn, resnet18, vit, got 'resnet50'"),
    ({"in_domain_removal": {"architecture": "small_cnn", "rate": 1.5}}, "in_domain_removal.rate: expected a number in"),
    ({"bias": {"attribute": "bg_color", "range": [0.05, 0.95], "strengths": [0, 1], "reliance_threshold": "weak"}},
     "bias.reliance_threshold: expected a flip % in \\[0, 100\\], or 'unbiased'"),
])
def test_a_bad_config_is_refused_naming_the_key_and_what_is_allowed(change, message):
    with pytest.raises(ConfigError, match=f"^x.yaml: {message}"):
        parse_benchmark_config(_raw(**change), "x.yaml")


def test_the_planted_strength_sets_how_well_the_attribute_alone_predicts_the_class(tmp_path):
    """At strength s the classes' ranges overlap on a share 1 − s of the range, so the best
    threshold on the attribute alone is right 1 − (1 − s) / (2 − s) of the time (0.5 … 1)."""
    config = load_benchmark_config(TINY)
    for k, strength in enumerate(config.strengths):
        batch = dataset_config(config, tmp_path, k).sample_split("train", n=6000, seed=k)
        stretchy = np.array([p.obj_name == "stretchy" for p in batch])
        bg = np.array([p.bg_color for p in batch])
        accuracy = max(np.mean((bg > t) == stretchy) for t in np.linspace(0.05, 0.95, 181))
        expected = 1 - (1 - strength) / (2 - strength)
        assert abs(accuracy - expected) < 0.025, (strength, accuracy, expected)
        assert bg.min() >= config.low and bg.max() <= config.high
    # every strength draws the rest of the scene alike: only the bias differs
    legs = [[p.arm_position for p in dataset_config(config, tmp_path, k).sample_split("train", n=50)] for k in (0, 4)]
    assert legs[0] == legs[1]
    test = dataset_config(config, tmp_path, None)
    assert list(test.splits["test"].interventions) == ["bg_color", "arm_position"]


@pytest.mark.models
@pytest.mark.parametrize("arch, method, why", [
    ("hybrid_vit", "deeplift", "no rule for attention"), ("hybrid_vit", "guided_backprop", "have none \\(GELU\\)"),
    ("hybrid_vit", "lrp", "not HybridViT"), ("vit", "grad_cam", "no known last convolutional stage in VisionTransformer")])
def test_methods_that_do_not_apply_to_a_vision_transformer_say_why(arch, method, why):
    from two4two.explain.attribution import AttributionError, attribution_method
    from two4two.models.classifier import build_classifier

    with pytest.raises(AttributionError, match=why):
        attribution_method(method, build_classifier(arch, image_size=32).eval())


def _measures(shares_by_method: dict, flip_rates: list[float], images: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    measures = {}
    for k, rate in enumerate(flip_rates):
        flips = (rng.random(images) < rate).astype(float)
        measures[f"net-{k}"] = {
            "flips": flips.tolist(), "flip_percent": {"value": 100 * flips.mean(), "low": 0.0, "high": 100.0},
            "shares": {m: (np.full(images, s[k]) + rng.normal(0, 0.01, images)).tolist() for m, s in shares_by_method.items()},
            "not_applicable": {}}
    measures["net-2"]["not_applicable"]["lrp"] = "lrp: no rule for skip connections"
    return measures


def test_a_share_that_follows_the_reliance_scores_rho_1_and_auc_1_and_one_that_does_not_scores_neither():
    raw = _raw(methods=["gradient", "occlusion", "sobel", "lrp"], resamples=200,
               architectures={"net": {"model": {"arch": "small_cnn"}}})
    config = parse_benchmark_config(raw, "x.yaml")
    flip_rates = [0.0, 0.02, 0.2, 0.4, 0.7]
    measures = _measures({"gradient": [0.1, 0.2, 0.4, 0.6, 0.9],  # follows the reliance
                          "occlusion": [0.9, 0.6, 0.4, 0.2, 0.1],  # against it
                          "sobel": [0.5] * 5}, flip_rates)
    scores = sweep_scores(config, "net", measures)
    follows, against = scores["methods"]["gradient"], scores["methods"]["occlusion"]
    assert follows["rho"]["value"] == pytest.approx(1.0) and follows["auc"]["value"] == pytest.approx(1.0)
    assert against["rho"]["value"] == pytest.approx(-1.0) and against["auc"]["value"] == pytest.approx(0.0)
    assert follows["rho"]["low"] <= 1.0 <= follows["rho"]["high"] + 1e-9 and follows["rho"]["low"] > 0.5
    # the image-only control's share is noise about one level: its ρ interval spans 0
    assert scores["methods"]["sobel"]["rho"]["low"] < 0 < scores["methods"]["sobel"]["rho"]["high"]
    assert scores["methods"]["lrp"] == {"not_applicable": "lrp: no rule for skip connections"}
    assert scores["relies"] == [False, False, True, True, True]  # threshold 5 %
    assert scores["reliance_vs_strength_rho"] == pytest.approx(1.0)


def test_unbiased_threshold_counts_a_model_as_relying_when_its_flips_lie_above_its_unbiased_models():
    """A weak architecture flips a quarter of its decisions even without the bias; relative to its own
    unbiased model, only the models whose flip % interval clears that one's rely on the bias."""
    from two4two.benchmark import relying

    def records(*intervals):
        return [{"flip_percent": {"value": (lo + hi) / 2, "low": lo, "high": hi}} for lo, hi in intervals]

    weak = records((20, 30), (20, 29), (25, 35), (31, 45), (40, 52))
    strong = records((7, 15), (14, 22), (15.1, 24), (38, 49), (40, 51))
    relative = parse_benchmark_config(_raw(bias={**_raw()["bias"], "reliance_threshold": "unbiased"}), "x.yaml")
    absolute = parse_benchmark_config(_raw(bias={**_raw()["bias"], "reliance_threshold": 20}), "x.yaml")
    assert relying(relative, weak).tolist() == [False, False, False, True, True]
    assert relying(relative, strong).tolist() == [False, False, True, True, True]
    assert relying(absolute, weak).tolist() == [True, True, True, True, True]  # every weak model over 20 %: no AUC
    assert relying(absolute, strong).tolist() == [False, False, False, True, True]


def test_detection_auc_counts_ties_as_half_and_has_no_answer_when_every_model_is_on_one_side():
    assert detection_auc(np.array([0.2, 0.2, 0.2]), np.array([False, True, True])) == pytest.approx(0.5)
    assert detection_auc(np.array([0.1, 0.3, 0.2]), np.array([False, True, False])) == pytest.approx(1.0)
    assert np.isnan(detection_auc(np.array([0.1, 0.3]), np.array([True, True])))


@pytest.mark.slow
@pytest.mark.render
@pytest.mark.models
def test_the_tiny_benchmark_runs_end_to_end_keeps_its_stages_and_its_controls_follow_no_model(tmp_path, capsys):
    from two4two.cli import main

    out = tmp_path / "run"
    assert main(["benchmark", str(TINY), "-o", str(out), "--workers", "1"]) == 0
    assert "## Leaderboard" in capsys.readouterr().out
    config = load_benchmark_config(TINY)
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["models"]) == sorted(f"{a}-{k}" for a, k in config.model_names())
    html = (out / "leaderboard.html").read_text()
    assert html.count("<img") == len(config.architectures) and "data:image/png;base64," in html and 'src="http' not in html
    measures = {n: json.loads((out / "measures" / n / "measures.json").read_text()) for n in results["models"]}
    # image-only controls give every model the same share; the random control draws anew per model
    for control in ("sobel", "silhouette"):
        assert len({tuple(m["shares"][control]) for m in measures.values()}) == 1
    randoms = [np.mean(m["shares"]["random"]) for m in measures.values()]
    assert len(set(randoms)) == len(randoms)
    # … and its share is the background's share of the pixels, whatever the model
    from two4two.split import Split

    background = float((Split(out / "data" / "test", "test").masks[:config.images] == 0).mean())
    assert np.abs(np.array(randoms) - background).max() < 0.03
    # a method that does not apply is an empty cell with its reason, not a crash
    assert "skip connections" in measures["resnet18-0"]["not_applicable"]["lrp"]
    assert "lrp" not in measures["small_cnn-0"]["not_applicable"]
    assert "attention" in measures["vit-0"]["not_applicable"]["deeplift"]
    assert "lrp_epsilon_plus" not in measures["resnet18-0"]["not_applicable"]  # zennit's rules hold skip connections
    assert "attention_rollout" not in measures["vit-0"]["not_applicable"]
    assert "has none" in measures["small_cnn-0"]["not_applicable"]["attention_rollout"]
    # single deletion of the small CNN trained without and with in-domain part removal
    deletion = {n: json.loads((out / "measures" / "deletion" / f"{n}.json").read_text()) for n in ("small_cnn-0", "small_cnn-0-removal")}
    assert deletion == results["deletion"]
    for record in deletion.values():
        assert set(record["single_deletion"]) == set(config.methods) - set(record["not_applicable"])
        finite = [r for r in record["single_deletion"].values() if np.isfinite(r["value"])]  # NaN: a constant map or drop
        assert len(finite) >= len(record["single_deletion"]) // 2, record["single_deletion"]
        assert all(-1 <= r["low"] <= r["value"] <= r["high"] <= 1 for r in finite)
    from two4two.dataset import read_split

    hidden = [bool(p.hidden_blocks) for p in read_split(out / "data" / "strength-0-removal", "train")]
    assert 0.25 < np.mean(hidden) < 0.75 and not any(p.hidden_blocks for p in read_split(out / "data" / "strength-0", "train"))
    board = (out / "leaderboard.md").read_text()
    assert "## Single deletion with and without in-domain part removal (small_cnn, no bias)" in board
    for arch in config.architectures:  # every single-model score of the strongest-bias model
        assert f"## Single-model scores: {arch} at the strongest bias (1)" in board
        assert (out / "measures" / f"{arch}-4" / "scores" / "attribution_scores.csv").is_file()
    for arch in config.architectures:
        assert (out / f"{arch}.png").stat().st_size > 1000
        assert "not_applicable" in results["scores"][arch]["methods"]["lrp"] or arch == "small_cnn"
    # a second run continues: nothing is trained or measured again
    def stamps():
        return {p: p.stat().st_mtime_ns for p in [*(out / "measures").rglob("measures.json"), *(out / "measures" / "deletion").glob("*")]}

    kept = stamps()
    assert len(kept) == len(results["models"]) + 2
    assert main(["benchmark", str(TINY), "-o", str(out), "--workers", "1"]) == 0
    assert stamps() == kept
    # kept measures are all a run needs: without the data and models it renders and trains nothing
    import shutil

    shutil.rmtree(out / "data")
    shutil.rmtree(out / "models")
    assert main(["benchmark", str(TINY), "-o", str(out), "--workers", "1"]) == 0
    assert not (out / "data").exists() and (out / "leaderboard.md").read_text() == board
    # another threshold scores the kept measures again; another config is refused in the same directory
    rescored = tmp_path / "threshold.yaml"
    rescored.write_text(TINY.read_text().replace("reliance_threshold: 5.0", "reliance_threshold: 100"))
    assert main(["benchmark", str(rescored), "-o", str(out)]) == 0
    assert not any(json.loads((out / "results.json").read_text())["scores"]["vit"]["relies"])
    other = tmp_path / "other.yaml"
    other.write_text(TINY.read_text().replace("seed: 7", "seed: 8"))
    assert main(["benchmark", str(other), "-o", str(out)]) == 2
    assert "holds a benchmark run of another config" in capsys.readouterr().err
