"""Trial-paradigm bundles exported from a model and painted data: the revealed pixels are exactly
the map's top p %, the difficulty bins and the AI-alone threshold follow the model's own
predictions, 3-NN returns the nearest training images of the predicted class in the model's
penultimate features, a failed export leaves nothing, and bad configs name the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from extras import imported

torch = imported("models", "torch")
imported("models", "captum")

from paint_worker import serve  # noqa: E402
from two4two.errors import ConfigError, Two4TwoError  # noqa: E402
from two4two.study.paradigms import CLASS_NAMES, REVEAL_LEVELS  # noqa: E402
from two4two.study.pipeline import export_bundle  # noqa: E402
from two4two.study.trial_export import BINS, ai_alone, confidence_bins, parse_trial_config  # noqa: E402

pytestmark = pytest.mark.models
SIZE = 32


class Spread(torch.nn.Module):
    """Pooled pixels → one logit, weights large enough that confidences cover (0.5, 1): every bin fills."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
        self.head = torch.nn.Linear(48, 1)
        with torch.no_grad():
            self.head.weight.mul_(40)

    def forward(self, x):
        return self.head(self.features(x)).squeeze(1)


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    from two4two.dataset import ensure

    root = tmp_path_factory.mktemp("trial_export")
    config = {"name": "painted", "sampler": "study2022", "seed": 3, "resolution": [SIZE, SIZE], "output_dir": "unused",
              "splits": {"train": {"n": 80}, "validation": {"n": 60}, "test": {"n": 400}}}
    (root / "config.yaml").write_text(json.dumps(config))
    data = ensure(root / "config.yaml", output_dir=root / "data", workers=1, worker_target=serve, progress=False)
    return root, data


@pytest.fixture
def model(monkeypatch):
    net = Spread().eval()
    monkeypatch.setattr("two4two.models.training.load_classifier", lambda path, device=None: net)
    return net


def export(root, data, paradigm, folder: str | None = None, **extra):
    raw = {"name": paradigm, "paradigm": paradigm, "model": "tiny", "data": str(data), "images": 2, "seed": 1, **extra}
    out = root / (folder or f"bundle_{paradigm}_{len(extra)}")
    return export_bundle(parse_trial_config(raw), out, overwrite=True, progress=False)


def test_progressive_reveal_shows_exactly_the_maps_top_pixels_at_every_level(painted, model):
    from PIL import Image

    from two4two.explain.attribution import attribution_method
    from two4two.explain.faithfulness import pixel_order, removal_masks
    from two4two.split import Split

    root, data = painted
    bundle = export(root, data, "progressive_reveal", methods=["gradient", "input_x_gradient"])
    assert len(bundle.trials) == 2 * 2 * 2 and bundle.order.draw == {"gradient": 4, "input_x_gradient": 4}
    split = Split(data, "test")
    index = {p.id: i for i, p in enumerate(split.params)}
    for method in ("gradient", "input_x_gradient"):
        trials = [t for t in bundle.trials if t.info["method"] == method]  # in the export's order: ties break alike
        rows = np.array([index[t.item] for t in trials])
        targets = (split.logits(model)[rows] > 0).astype(int)
        order = pixel_order(attribution_method(method, model).attribute(split.images[rows], targets), seed=1)
        for k, (trial, i) in enumerate(zip(trials, rows)):
            assert trial.info["label"] == CLASS_NAMES[split.true_labels[i]]
            assert [s.info["level"] for s in trial.steps] == list(REVEAL_LEVELS)
            for step in trial.steps:
                shown = np.asarray(Image.open(bundle.root / step.images[0].image))[::4, ::4]
                mask = removal_masks(order[k:k + 1], (SIZE, SIZE), step.info["level"], most_relevant=True)[0]
                assert np.array_equal(shown, np.where(mask[..., None], split.images[i], 128))
                assert step.correct == trial.info["label"]
            assert mask.sum() == round(SIZE * SIZE * 0.6)  # the last level shows 60 % of the pixels


@pytest.mark.slow
def test_saved_maps_are_used_when_given_and_must_explain_the_same_predictions(painted, model):
    from PIL import Image

    from two4two.explain.attribution import Attributions, load_maps
    from two4two.explain.faithfulness import pixel_order, removal_masks
    from two4two.split import Split

    root, data = painted
    split = Split(data, "test")
    Attributions(model, ["gradient"]).explain(split).save(root / "maps")
    saved = export(root, data, "progressive_reveal", "from_saved_maps", methods=["gradient"], maps=str(root / "maps"))
    computed = export(root, data, "progressive_reveal", "computed_maps", methods=["gradient"])
    assert [t.id for t in saved.trials] == [t.id for t in computed.trials]
    # the saved maps (float16) decide which pixels are shown
    maps = load_maps(root / "maps")
    index = {pid: j for j, pid in enumerate(maps.ids)}
    order = pixel_order(maps.maps["gradient"][[index[t.item] for t in saved.trials]], seed=1)
    for k, trial in enumerate(saved.trials):
        image = split.images[[p.id for p in split.params].index(trial.item)]
        for step in trial.steps:
            shown = np.asarray(Image.open(saved.root / step.images[0].image))[::4, ::4]
            mask = removal_masks(order[k:k + 1], (SIZE, SIZE), step.info["level"], most_relevant=True)[0]
            assert np.array_equal(shown, np.where(mask[..., None], image, 128))
    with pytest.raises(Two4TwoError, match="maps: .* has no 'grad_cam'"):
        export(root, data, "progressive_reveal", methods=["grad_cam"], maps=str(root / "maps"))
    other = Spread()
    with torch.no_grad():
        other.head.weight.mul_(-1)  # predicts the other class everywhere
    Attributions(other, ["gradient"]).explain(split).save(root / "other_maps")
    with pytest.raises(Two4TwoError, match="explains other classes than tiny predicts"):
        export(root, data, "progressive_reveal", methods=["gradient"], maps=str(root / "other_maps"))


def test_accept_or_reject_bins_by_the_models_confidence_and_finds_the_nearest_training_images(painted, model):
    from PIL import Image

    from two4two.explain.neighbours import penultimate_features
    from two4two.split import Split

    root, data = painted
    bundle = export(root, data, "accept_reject", conditions=["confidence", "gradient", "knn"], neighbours_pool=80)
    split, train, validation = Split(data, "test"), Split(data, "train"), Split(data, "validation")
    logits = split.logits(model)
    bins = confidence_bins(logits, split.true_labels, (0.7, 0.9))
    assert set(bins) == set(BINS)  # the model spreads its confidence over every bin
    index = {p.id: i for i, p in enumerate(split.params)}
    train_features = penultimate_features(model, train.images)
    train_index = {p.id: j for j, p in enumerate(train.params)}
    for trial in bundle.trials:
        i = index[trial.item]
        assert trial.group == trial.info["bin"] == bins[i]
        predicted = int(logits[i] > 0)
        (step,) = trial.steps
        assert step.correct == ("Yes" if predicted == split.true_labels[i] else "No")
        assert trial.info["predicted"] == CLASS_NAMES[predicted]
        assert len(step.images) == {"confidence": 1, "gradient": 2, "knn": 4}[trial.condition]
        if trial.condition == "knn":
            same = [j for j, p in enumerate(train.params) if p.label == predicted]
            distance = ((train_features[same] - penultimate_features(model, split.images[i:i + 1])) ** 2).sum(axis=1)
            nearest = [train.params[same[k]].id for k in np.argsort(distance, kind="stable")[:3]]
            shown = [img.image.removeprefix("pictures/train_").removesuffix(".png") for img in step.images[1:]]
            assert shown == nearest
            for img, pid in zip(step.images[1:], shown):
                assert np.array_equal(np.asarray(Image.open(bundle.root / img.image))[::4, ::4], train.images[train_index[pid]])
    assert {c: sum(t.condition == c for t in bundle.trials) for c in bundle.condition_names} == {c: 12 for c in ("confidence", "gradient", "knn")}
    threshold, accuracy = ai_alone(validation.logits(model), validation.true_labels)
    assert bundle.facts["ai_alone"]["threshold"] == threshold and bundle.facts["ai_alone"]["validation_accuracy"] == pytest.approx(accuracy, abs=1e-5)
    assert sum(bundle.facts["bin_shares"].values()) == pytest.approx(1.0, abs=1e-3)


def test_guess_the_output_over_represents_misclassified_images_and_asks_for_the_prediction(painted, model):
    from two4two.split import Split

    root, data = painted
    bundle = export(root, data, "guess_output", conditions=["no_map", "gradient"], images=3, draw={"misclassified": 2, "correct": 2})
    split = Split(data, "test")
    predicted = (split.logits(model) > 0).astype(int)
    index = {p.id: i for i, p in enumerate(split.params)}
    for trial in bundle.trials:
        i = index[trial.item]
        assert trial.group == ("correct" if predicted[i] == split.true_labels[i] else "misclassified")
        assert trial.steps[0].correct == CLASS_NAMES[predicted[i]] and CLASS_NAMES[split.true_labels[i]] in trial.steps[0].text
    groups = [t.group for t in bundle.trials if t.condition == "no_map"]
    assert groups.count("misclassified") == groups.count("correct") == 3
    assert bundle.order.draw == {"misclassified": 2, "correct": 2}


def test_a_failed_export_leaves_nothing_and_bad_configs_name_the_field(painted, model):
    root, data = painted
    with pytest.raises(Two4TwoError, match="images: 500 misclassified images are needed"):
        export(root, data, "guess_output", conditions=["no_map", "gradient"], images=500)
    assert not (root / "bundle_guess_output_2").exists() and not (root / ".bundle_guess_output_2.partial").exists()
    good = {"name": "x", "paradigm": "accept_reject", "model": "m", "data": "d", "conditions": ["confidence", "knn"]}
    for change, message in [
        ({"paradigm": "maze"}, "paradigm: expected one of progressive_reveal, .*, got 'maze'"),
        ({"conditions": ["confidence"]}, "conditions: expected at least two distinct"),
        ({"conditions": ["confidence", "videos"]}, "conditions: expected at least two distinct of confidence"),
        ({"methods": ["gradient"]}, "methods: expected nothing: list the map methods under `conditions`"),
        ({"confidence_edges": [0.9, 0.7]}, "confidence_edges: expected two numbers 0.5 < low < high < 1, got \\[0.9, 0.7\\]"),
        ({"images": 0}, "images: expected an integer ≥ 1, got 0"),
        ({"draw": {"easy_correct": 0}}, "draw: expected a mapping group → trials per participant"),
        ({"colour": 1}, "study.yaml: colour: unknown key; allowed: "),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_trial_config({**good, **change}, "study.yaml")
    with pytest.raises(ConfigError, match="conditions: expected nothing: progressive reveal compares `methods`"):
        parse_trial_config({"name": "x", "paradigm": "progressive_reveal", "model": "m", "data": "d", "methods": ["gradient"],
                            "conditions": ["a", "b"]})


def test_the_shipped_trial_configs_load():
    from pathlib import Path

    from two4two.study.pipeline import load_config as load_study_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    reveal = load_study_config(configs / "study_reveal.yaml")
    assert reveal.paradigm == "progressive_reveal" and reveal.methods == ("gradient", "guided_backprop", "grad_cam")
    accept = load_study_config(configs / "study_accept_reject.yaml")
    assert accept.conditions[0] == "confidence" and "knn" in accept.conditions and accept.confidence_edges == (0.6, 0.75)
    guess = load_study_config(configs / "study_guess.yaml")
    assert guess.draw == {"misclassified": 10, "correct": 10} and guess.map_methods == ("gradient", "guided_backprop", "grad_cam")
