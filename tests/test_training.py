"""Classifier training and importance end to end on a tiny rendered dataset (32 px)."""

import json

import numpy as np
import pytest
from extras import imported

torch = imported("models", "torch")

from two4two.cli import main  # noqa: E402
from two4two.errors import ConfigError, Two4TwoError  # noqa: E402
from two4two.importance import Importance  # noqa: E402
from two4two.models.classifier import build_classifier  # noqa: E402
from two4two.models.training import load_classifier, load_train_config, parse_model_config, predict_logits  # noqa: E402
from two4two.split import Split  # noqa: E402

# Every test needs torch; those of a trained model are slow and need Blender too: the `trained`
# fixture renders its dataset from the dataset_config before training, `trained_inn` trains an INN.
pytestmark = pytest.mark.models

DATASET = """\
name: tiny_colour
sampler: color_bias
seed: 3
resolution: [32, 32]
render: {samples: 2, denoise: false, subdivision_levels: 1}
sampler_args:
  # A blatant shortcut, so a few epochs on a few hundred images learn something.
  obj_color: {peaky: {uniform: [0.0, 0.3]}, stretchy: {uniform: [0.7, 1.0]}}
splits:
  train: {n: 320, sampler_args: {labeling_error: {bernoulli: 0.1}}}
  validation: {n: 64}
  test: {n: 64, interventions: [obj_color, bg_color]}
"""

MODEL = """\
kind: classifier
name: tiny
data: {data}
dataset_config: {dataset}
model: {{arch: small_cnn, width: 8}}
# 8 epochs: the batch-norm statistics lag behind the weights in these 10-batch epochs
# (validation accuracy 0.70 after 4 epochs, 0.95 after 8, on the pale look).
training: {{epochs: 8, batch_size: 32, learning_rate: 0.01, seed: 0}}
output_dir: {out}
"""


INN_MODEL = """\
kind: classifier
name: tiny_inn
data: {data}
model: {{arch: inn, resolution: 32, levels: 3, steps: 2, hidden_channels: 16, classifier_level: 2, beta: 5.0}}
# 8 epochs: after 4 the flow still reads a little background into its logit (R² 0.43 of a
# median |Δlogit| of 0.3); after 8, 0.15.
training: {{epochs: 8, batch_size: 32, learning_rate: 0.003, grad_clip: 50.0, seed: 0}}
output_dir: {out}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    (tmp / "data.yaml").write_text(DATASET)
    (tmp / "model.yaml").write_text(MODEL.format(data=tmp / "data", dataset=tmp / "data.yaml", out=tmp / "model"))
    # The dataset is missing: training renders it from dataset_config first.
    assert main(["train", str(tmp / "model.yaml")]) == 0
    return tmp


@pytest.mark.slow
@pytest.mark.render
def test_training_writes_a_checkpoint_with_its_config_and_history(trained):
    history = json.loads((trained / "model" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(h["val_accuracy"] for h in history) > 0.9  # the colour shortcut is learnt
    checkpoint = torch.load(trained / "model" / "model.pt", weights_only=True)
    assert checkpoint["config"]["name"] == "tiny" and checkpoint["arch"] == "small_cnn"
    assert checkpoint["validation"]["accuracy"] == max(h["val_accuracy"] for h in history)


@pytest.mark.slow
@pytest.mark.render
def test_the_loaded_model_reproduces_its_validation_accuracy(trained):
    from two4two.dataset import load_split_arrays

    model = load_classifier(trained / "model")
    images, params = load_split_arrays(trained / "data", "validation", progress=False)
    logits = predict_logits(model, images)
    accuracy = ((logits > 0) == np.array([p.true_label for p in params])).mean()
    checkpoint = torch.load(trained / "model" / "model.pt", weights_only=True)
    assert accuracy == pytest.approx(checkpoint["validation"]["accuracy"])


@pytest.mark.slow
@pytest.mark.render
def test_importance_of_the_trained_model_sees_the_colour_shortcut(trained, capsys):
    out = trained / "importance"
    assert main(["evaluate", "importance", "--model", str(trained / "model"), "--data", str(trained / "data"),
                 "--resamples", "100", "--random-init", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "colour" in printed and "random-init baseline" in printed
    for stem in ("importance", "importance_random_init"):
        for name in ("csv", "md", "png", "vs_data_bias.png"):
            assert (out / f"{stem}.{name}" if name != "vs_data_bias.png" else out / f"{stem}_{name}").is_file()
    rows = {r["attribute"]: r for r in __import__("csv").DictReader(open(out / "importance.csv"))}
    assert float(rows["obj_color"]["median_abs_delta_logit"]) > 2 * float(rows["bg_color"]["median_abs_delta_logit"])
    assert float(rows["obj_color"]["r_squared"]) > float(rows["bg_color"]["r_squared"])


@pytest.mark.slow
@pytest.mark.render
def test_missing_intervention_splits_are_rendered_on_request(trained, tmp_path):
    import shutil

    from two4two.dataset import ensure, read_manifest, read_split

    # Its own copy: the shared dataset keeps exactly the splits the other tests were written for,
    # whichever order they run in.
    data = tmp_path / "data"
    shutil.copytree(trained / "data", data)
    model = load_classifier(trained / "model")
    ensure(data, {"test": ["spherical"]}, workers=1, progress=False)
    result = Importance(model, ["spherical"], n_resamples=50).evaluate(Split(data, "test"))
    assert [r.attribute for r in result.rows] == ["spherical"] and result.rows[0].n == 64
    manifest = read_manifest(data)
    assert manifest["splits"]["test_intervened_spherical"] == {"n": 64, "intervention_of": "test", "attribute": "spherical"}
    assert manifest["counts"]["test_intervened_spherical"] == 64
    assert "test_intervened_spherical" not in read_manifest(trained / "data")["splits"]  # the shared one is untouched
    originals = {p.id: p for p in read_split(data, "test")}
    for p in read_split(data, "test_intervened_spherical"):
        o = originals[p.original_id]
        assert p.spherical != o.spherical and p.obj_color == o.obj_color and p.arm_position == o.arm_position


@pytest.mark.slow
@pytest.mark.render
def test_a_model_and_a_config_give_the_table_in_one_command(trained, tmp_path, capsys):
    config = tmp_path / "only_config.yaml"
    config.write_text(
        "sampler: study2022\nseed: 9\nresolution: [32, 32]\n"
        "render: {samples: 2, denoise: false, subdivision_levels: 1}\n"
        f"output_dir: {tmp_path / 'rendered'}\nsplits:\n  test: {{n: 12}}\n"
    )
    assert main(["evaluate", "importance", "--model", str(trained / "model"), "--data", str(config), "--attributes", "obj_color",
                 "--resamples", "50", "--workers", "1", "-o", str(tmp_path / "out")]) == 0
    assert "colour" in capsys.readouterr().out
    assert (tmp_path / "rendered" / "test_intervened_obj_color" / "parameters.jsonl").read_text().count("\n") == 12
    assert (tmp_path / "out" / "importance.csv").is_file()


@pytest.mark.slow
@pytest.mark.render
def test_an_nn_module_and_a_plain_callable_measure_the_same(trained):
    model = load_classifier(trained / "model")
    a = Importance(model, n_resamples=50).evaluate(Split(trained / "data", "test"))
    b = Importance(lambda x: model(x), n_resamples=50).evaluate(Split(trained / "data", "test"))
    for ra, rb in zip(a.rows, b.rows):
        assert ra.flip_percent.value == rb.flip_percent.value
        assert ra.median_abs_delta_logit.value == pytest.approx(rb.median_abs_delta_logit.value)


def test_shift_augmentation_moves_each_image_by_at_most_the_bound_and_repeats_the_edge():
    from two4two.models.inputs import shifted

    rng = np.random.default_rng(0)
    images = np.zeros((200, 16, 16, 3), np.uint8)
    images[:, 6:10, 6:10] = 255  # a white square in the middle of each image
    out = shifted(images, 3, rng)
    assert out.shape == images.shape and out.dtype == np.uint8
    offsets = set()
    for image in out:
        ys, xs = np.nonzero(image[..., 0])
        assert len(ys) == 16  # the square moved whole
        offsets.add((ys.min() - 6, xs.min() - 6))
    assert offsets == {(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)}  # every offset, none beyond
    rows = (np.arange(16, dtype=np.uint8) + 10)[None, :, None, None] * np.ones((50, 16, 16, 3), np.uint8)
    moved = shifted(rows, 2, np.random.default_rng(1))
    assert set(np.unique(moved)) <= set(range(10, 26))  # the border repeats existing rows: no black fill
    assert (moved[:, 0] == 10).all() or (moved[:, 0] <= 12).all()  # a top row comes from at most 2 rows below
    with pytest.raises(ConfigError, match="augment_shift: expected 0 for an observer"):
        parse_model_config({"kind": "observer", "data": "d", "output_dir": "o", "training": {"augment_shift": 2}})


def test_a_second_training_into_one_output_directory_is_refused(tmp_path):
    import os

    from two4two.locks import LockedError, exclusive
    from two4two.models.training import train_model

    config = parse_model_config({"data": str(tmp_path / "data"), "output_dir": str(tmp_path / "out")})
    with exclusive(tmp_path / "out", "training"):  # the first training
        with pytest.raises(LockedError, match=rf"training {tmp_path / 'out'}: is being written by another process \(pid {os.getpid()}"):
            train_model(config, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lock"]
    with pytest.raises(Two4TwoError, match="has no split 'train'"):  # the lock is free again: on to the data
        train_model(config, progress=False)


def test_bad_model_paths_and_configs_are_clear_errors(tmp_path):
    with pytest.raises(Two4TwoError, match="no such checkpoint"):
        load_classifier(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Two4TwoError, match="not a readable checkpoint"):
        load_classifier(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match=r"model\.arch: expected one of"):
        parse_model_config({"data": "d", "output_dir": "o", "model": {"arch": "vgg"}})
    with pytest.raises(ConfigError, match=r"training\.epochs: expected an integer ≥ 1, got 'ten'"):
        parse_model_config({"data": "d", "output_dir": "o", "training": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"training\.ema_decay: expected a number in \[0, 1\), got 1$"):
        parse_model_config({"data": "d", "output_dir": "o", "training": {"ema_decay": 1}})
    with pytest.raises(ConfigError, match=r"training\.epoch: unknown key"):
        parse_model_config({"data": "d", "output_dir": "o", "training": {"epoch": 3}})
    (tmp_path / "m.yaml").write_text("kind: dataset\n")
    with pytest.raises(ConfigError, match="kind: expected one of classifier, observer for two4two train, got 'dataset'"):
        load_train_config(tmp_path / "m.yaml")


@pytest.fixture(scope="module")
def trained_inn(trained):
    (trained / "inn.yaml").write_text(INN_MODEL.format(data=trained / "data", out=trained / "inn"))
    assert main(["train", str(trained / "inn.yaml")]) == 0  # the same command as any classifier
    return trained / "inn"


@pytest.mark.slow
@pytest.mark.render
def test_the_inn_trains_on_likelihood_and_labels(trained_inn):
    history = json.loads((trained_inn / "history.json").read_text())
    assert history[-1]["val_bits_per_dim"] < history[0]["val_bits_per_dim"] < 8  # better than uniform noise
    assert history[-1]["train_bce"] < history[0]["train_bce"]
    assert max(h["val_accuracy"] for h in history) > 0.85  # the colour shortcut is linear in φ too


@pytest.mark.slow
@pytest.mark.render
def test_the_inn_is_just_another_classifier_to_importance(trained_inn):
    result = Importance(load_classifier(trained_inn), n_resamples=50).evaluate(Split(trained_inn.parent / "data", "test"))
    rows = {r.attribute: r for r in result.rows}
    assert rows["obj_color"].median_abs_delta_logit.value > 2 * rows["bg_color"].median_abs_delta_logit.value
    # The shortcut is followed, and directed: R² 0.95, 56 % of predictions flip (measured).
    assert rows["obj_color"].r_squared.value > 0.5 and rows["obj_color"].flip_percent.value > 30
    # The background moves the logit little (median |Δlogit| 0.12 against 1.46 for the colour,
    # 3 % flips). R² is scale-free, so on these 32 px renders, where a 1.5 px pixel filter mixes
    # the background into most animal pixels, even that small dependence reads as R² 0.44.
    assert rows["bg_color"].flip_percent.value <= 10 and rows["obj_color"].r_squared.value > rows["bg_color"].r_squared.value


@pytest.mark.slow
@pytest.mark.render
def test_counterfactual_grid_from_the_command_line(trained_inn, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["explain", "counterfactuals", "--model", str(trained_inn), "--data", str(trained_inn.parent / "data"),
                 "--rows", "4", "--coverage", "0.9", "--columns", "4", "-o", str(out)]) == 0
    assert "largest |logit" in capsys.readouterr().out
    from PIL import Image

    assert Image.open(out).size[0] > 4 * 32
    record = json.loads(out.with_suffix(".json").read_text())
    assert len(record["ids"]) == len(set(record["ids"])) == 4
    targets, achieved = np.array(record["target_logits"]), np.array(record["achieved_logits"])
    assert np.all(np.diff(targets) > 0) and achieved.shape == (4, 4)
    # Saved as 8-bit images the counterfactuals still order by their target logit.
    assert np.all(np.diff(achieved, axis=1) > 0)
    assert np.abs(achieved - targets).max() < 0.25 * (targets[-1] - targets[0])


@pytest.mark.slow
@pytest.mark.render
def test_counterfactuals_of_a_plain_cnn_are_a_clear_error(trained, tmp_path, capsys):
    assert main(["explain", "counterfactuals", "--model", str(trained / "model"), "--data", str(trained / "data"),
                 "-o", str(tmp_path / "g.png")]) == 2
    assert "counterfactuals need an INN" in capsys.readouterr().err


def test_a_bad_inn_setting_is_named_before_training(tmp_path):
    with pytest.raises(ConfigError, match="model: classifier_level"):
        parse_model_config({"data": "d", "output_dir": "o", "model": {"arch": "inn", "levels": 2, "classifier_level": 5}})
    with pytest.raises(ConfigError, match="training.head_learning_rate: expected 0: only a model with a linear head.*small_cnn"):
        parse_model_config({"data": "d", "output_dir": "o", "training": {"head_learning_rate": 0.1}})
    with pytest.raises(ConfigError, match=r"training.warmup_fraction: expected a number in \(0, 1\), got 1.5"):
        parse_model_config({"data": "d", "output_dir": "o", "training": {"warmup_fraction": 1.5}})


@pytest.mark.slow
@pytest.mark.render
def test_the_inn_head_learns_at_its_own_rate(trained, tmp_path):
    """head_learning_rate: the paper trained its linear classifier with a rate of its own. With the
    flow's rate ~0 and the head's large, one epoch moves the head and leaves the flow as it was."""
    text = INN_MODEL.format(data=trained / "data", out=tmp_path / "inn").replace(
        "epochs: 8, batch_size: 32, learning_rate: 0.003", "epochs: 1, batch_size: 32, learning_rate: 1.0e-12, head_learning_rate: 0.05")
    (tmp_path / "inn.yaml").write_text(text)
    cfg = load_train_config(tmp_path / "inn.yaml")
    assert cfg.training.head_learning_rate == 0.05
    assert main(["train", str(tmp_path / "inn.yaml")]) == 0
    state = torch.load(tmp_path / "inn" / "last.pt", weights_only=True)
    torch.manual_seed(cfg.training.seed)  # the same initialisation as the training's
    fresh = build_classifier(**cfg.model).state_dict()
    after = state["state_dict"]
    head = [k for k in after if k.startswith("head.")]
    flow = [k for k in after if not k.startswith("head.") and "done_init" not in k and k in fresh
            and fresh[k].dtype.is_floating_point and "flows.2" not in k]  # flows.2: actnorm, set from the data
    assert head and flow
    assert max(float((after[k] - fresh[k]).abs().max()) for k in head) > 1e-3
    assert max(float((after[k] - fresh[k]).abs().max()) for k in flow) < 1e-6
    assert [g["max_lr"] for g in state["optimiser"]["param_groups"]] == [1e-12, 0.05]


@pytest.mark.parametrize("arch", ["small_cnn", "resnet18", "mobilenet_v2", "inn"])
def test_every_architecture_gives_one_logit_per_image(arch):
    model = build_classifier(arch).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 3, 64, 64)).shape == (3,)


@pytest.mark.parametrize("which", ["small_cnn", "inn"])
@pytest.mark.slow
@pytest.mark.render
def test_concepts_from_the_command_line(trained, trained_inn, which, tmp_path, capsys):
    model = trained / "model" if which == "small_cnn" else trained_inn
    out = tmp_path / "concepts.png"
    assert main(["explain", "concepts", "--model", str(model), "--data", str(trained / "data"), "--images", "64",
                 "--components", "6", "--keep", "3", "--examples", "4", "-o", str(out)]) == 0
    assert "6 components explain" in capsys.readouterr().out
    from PIL import Image

    assert Image.open(out).size[1] > 6 * 32  # two rows per concept
    record = json.loads(out.with_suffix(".json").read_text())
    concepts = record["concepts"]
    assert len(concepts) == 3 and record["images"] == 64 and 0 < record["explained_variance"] <= 1
    r = [c["r"] for c in concepts]
    assert r == sorted(r, reverse=True) and min(r) >= 0 and r[0] == max(record["r_all_components"])
    top = concepts[0]
    assert len(top["positive"]["ids"]) == len(top["negative"]["ids"]) == 4
    assert min(top["positive"]["scores"]) > max(top["negative"]["scores"])
    # Oriented to r ≥ 0, the positive pole's examples read as more Stretchy to the model than the negative pole's.
    from two4two.dataset import load_image

    def mean_logit(ids):
        return predict_logits(load_classifier(model), np.stack([load_image(trained / "data", "test", i) for i in ids])).mean()

    assert mean_logit(top["positive"]["ids"]) > mean_logit(top["negative"]["ids"])


@pytest.mark.slow
@pytest.mark.render
def test_concepts_need_enough_images(trained, tmp_path, capsys):
    assert main(["explain", "concepts", "--model", str(trained / "model"), "--data", str(trained / "data"),
                 "--images", "1000", "-o", str(tmp_path / "c.png")]) == 2
    assert "images: 1000 must be between 3 and the split's 64 images" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


@pytest.mark.slow
@pytest.mark.render
def test_baseline_grid_from_the_command_line(trained, tmp_path, capsys):
    out = tmp_path / "baseline.png"
    assert main(["explain", "baseline", "--model", str(trained / "model"), "--data", str(trained / "data"),
                 "--rows", "4", "--labels", "Peeky", "unsure", "Stretchy", "-o", str(out)]) == 0
    assert "baseline grid (4 rows × 3 columns" in capsys.readouterr().out
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["columns"] == ["Peeky", "unsure", "Stretchy"]
    logits = np.array(record["logits"])
    assert logits.shape == (4, 3) and np.all(np.diff(logits, axis=0) >= 0)
    # Every cell lies between its column's edges, and the stored logits are the model's.
    edges = record["column_edges"]
    for c in range(3):
        assert np.all((logits[:, c] >= edges[c] - 1e-9) & (logits[:, c] <= edges[c + 1] + 1e-9))
    from two4two.dataset import load_image

    ids = record["ids"]
    again = predict_logits(load_classifier(trained / "model"), np.stack([load_image(trained / "data", "test", i) for i in ids[0]]))
    assert again == pytest.approx(logits[0], abs=1e-5)


@pytest.mark.slow
@pytest.mark.render
def test_study_bundle_from_the_command_line(trained, trained_inn, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(trained / "data", data)  # the export renders the missing interventions into its own copy
    (tmp_path / "study.yaml").write_text(
        f"name: tiny_study\nmodel: {trained_inn}\ndata: {data}\nrows: 2\nconcepts: {{images: 60, components: 6}}\n"
    )
    bundle = tmp_path / "bundle"
    assert main(["study", "bundle", str(tmp_path / "study.yaml"), "-o", str(bundle), "--create-interventions"]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [c["name"] for c in manifest["conditions"]] == ["baseline", "counterfactual", "concepts"]
    # Equal information: every condition shows as many images (rows × 5).
    assert [c["stimulus"]["images_shown"] for c in manifest["conditions"]] == [10, 10, 10]
    for condition in manifest["conditions"]:
        assert (bundle / condition["stimulus"]["image"]).is_file()
        assert all((bundle / image).is_file() for image in condition["tutorial"]["images"])
        assert all(q["answer"] in q["choices"] for q in condition["comprehension"])
    assert [q["attribute"] for q in manifest["questions"]] == ["legs", "colour", "background", "shape", "rotation_bending"]
    # The answer key is the one derived from the INN's measured importance, written beside it.
    key = json.loads((bundle / "answer_key.json").read_text())
    assert manifest["answer_key"] == key["answers"]
    rows = {r["attribute"]: r for r in __import__("csv").DictReader((bundle / "importance" / "importance.csv").open())}
    for question, attribute in (("colour", "obj_color"), ("background", "bg_color"), ("shape", "spherical")):
        relevant = float(rows[attribute]["r_squared_low"]) > key["threshold"]
        assert manifest["answer_key"][question] == ("relevant" if relevant else "irrelevant")
    assert "answer key" in out and "study bundle" in out
    # No half-built bundle is left beside it, and an existing bundle is not overwritten by accident.
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    assert main(["study", "bundle", str(tmp_path / "study.yaml"), "-o", str(bundle)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.render
def test_a_study_with_counterfactuals_needs_an_inn(trained, tmp_path, capsys):
    (tmp_path / "study.yaml").write_text(f"name: s\nmodel: {trained / 'model'}\ndata: {trained / 'data'}\n")
    assert main(["study", "bundle", str(tmp_path / "study.yaml"), "-o", str(tmp_path / "b")]) == 2
    assert "needed by the counterfactual condition" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
@pytest.mark.render
def test_an_interrupted_training_resumes_where_it_stopped(trained, tmp_path):
    """Two epochs, then the rest with --resume: the same history and weights as one run of four,
    the moving average of the weights included."""
    def config(out, epochs):
        text = MODEL.format(data=trained / "data", dataset=trained / "data.yaml", out=out)
        return text.replace("epochs: 8", f"epochs: {epochs}, ema_decay: 0.9")

    (tmp_path / "whole.yaml").write_text(config(tmp_path / "whole", 4))
    assert main(["train", str(tmp_path / "whole.yaml")]) == 0
    # "Interrupted" after two epochs: a run with the same config whose loop stops early.
    (tmp_path / "cut.yaml").write_text(config(tmp_path / "cut", 4))
    from two4two.models import training

    cfg = training.load_train_config(tmp_path / "cut.yaml")
    stop = {"epochs": 0}
    original = training.validation_record

    def stop_after_two(*args, **kwargs):
        stop["epochs"] += 1
        if stop["epochs"] > 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    training.validation_record = stop_after_two
    try:
        with pytest.raises(KeyboardInterrupt):
            training.train_model(cfg, progress=False)
    finally:
        training.validation_record = original
    assert len(json.loads((tmp_path / "cut" / "history.json").read_text())) == 2
    assert main(["train", str(tmp_path / "cut.yaml"), "--resume"]) == 0
    whole = json.loads((tmp_path / "whole" / "history.json").read_text())
    cut = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [h["epoch"] for h in cut] == [1, 2, 3, 4]
    for a, b in zip(whole, cut):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_accuracy"] == b["val_accuracy"]
    w1 = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["state_dict"]
    w2 = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(w1[k].float(), w2[k].float(), atol=1e-5) for k in w1)
    e1 = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["averaged"]
    e2 = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["averaged"]
    assert all(torch.allclose(e1[k].float(), e2[k].float(), atol=1e-5) for k in e1)
    # What is validated and kept is the average, not the last step's weights.
    kept = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    if kept["epoch"] == 4:
        assert all(torch.equal(kept["state_dict"][k], e2["module." + k]) for k in kept["state_dict"])
    assert not all(torch.allclose(kept["state_dict"][k].float(), w2[k].float(), atol=1e-3) for k in w2)
    # A resume of a finished training trains nothing more.
    assert main(["train", str(tmp_path / "cut.yaml"), "--resume"]) == 0
    assert len(json.loads((tmp_path / "cut" / "history.json").read_text())) == 4
