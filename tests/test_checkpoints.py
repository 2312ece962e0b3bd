"""Checkpoints hold tensors and plain data only and are read by torch's weights-only unpickler:
a .pt file is a pickle, so any other reader runs whatever code the file names. Tiny models, no
Blender, no rendered data."""

import os
import pathlib
import shlex
import types

import numpy as np
import pytest
from extras import imported

torch = imported("models", "torch")

from two4two.cli import main  # noqa: E402
from two4two.errors import CheckpointError, Two4TwoError  # noqa: E402
from two4two.models import training  # noqa: E402
from two4two.models.classifier import build_classifier  # noqa: E402
from two4two.models.training import (  # noqa: E402
    checkpoint_written_for,
    load_classifier,
    load_observer,
    parse_model_config,
    predict_logits,
    random_init_like,
    read_checkpoint,
    restore_training_state,
    save_model_checkpoint,
    save_training_state,
    training_split_of,
)

pytestmark = pytest.mark.models


def tiny_config(tmp_path, **training_settings):
    raw = {"kind": "classifier", "name": "tiny", "data": str(tmp_path / "data"), "output_dir": str(tmp_path / "out"),
           "model": {"arch": "small_cnn", "width": 4}, "training": {"epochs": 2, "batch_size": 8, "seed": 0, **training_settings}}
    return parse_model_config(raw)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_classifier("small_cnn", width=4).eval()


def images(n=6, seed=1):
    return (np.random.default_rng(seed).random((n, 16, 16, 3)) * 255).astype(np.uint8)


def old_format(model, **changes):
    """A model.pt as the writer before weights-only checkpoints wrote it (torch.save of this dict)."""
    checkpoint = {
        "kind": "classifier", "arch": "small_cnn", "model_args": {"width": 4}, "state_dict": model.state_dict(),
        "config": {"kind": "classifier", "name": "tiny", "data": "data/x", "output_dir": "models/x", "model": {"arch": "small_cnn", "width": 4}},
        "training": {"epochs": 2, "train_split": "train", "seed": 0}, "epoch": 2,
        "validation": {"accuracy": 0.75}, "resolution": [16, 16], "dataset": "data/nowhere",
    }
    checkpoint.update(changes)
    return checkpoint


def one_line_error(excinfo, path, *words):
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message
    return message


class RunsCode:
    """Pickles as a call: whoever unpickles it with the ordinary unpickler makes that call."""

    def __init__(self, call):
        self.call = call

    def __reduce__(self):
        return self.call


def payloads(marker):
    return {
        "Path.touch": (pathlib.Path.touch, (marker,)),
        "os.system": (os.system, (f"touch {shlex.quote(str(marker))}",)),
    }


@pytest.mark.parametrize("payload", ["Path.touch", "os.system"])
def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path, capsys, payload):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({**old_format(tiny_model()), "validation": RunsCode(payloads(marker)[payload])}, evil)
    config = tiny_config(tmp_path)
    readers = {
        "load_classifier": load_classifier, "load_observer": load_observer, "random_init_like": random_init_like,
        "training_split_of": training_split_of, "checkpoint_written_for": lambda p: checkpoint_written_for(p, config),
    }
    for name, read in readers.items():
        with pytest.raises(CheckpointError) as excinfo:
            read(evil)
        one_line_error(excinfo, evil, "holds objects other than tensors and plain data", "not loaded")
        assert not marker.exists(), f"{name} ran the file's code"
    # The command line: the model is the first thing `two4two evaluate importance` reads.
    assert main(["evaluate", "importance", "--model", str(evil), "--data", str(tmp_path / "no_data")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(evil) in err and "holds objects other than tensors" in err, err
    assert "Traceback" not in err and "KeyError" not in err
    assert not marker.exists()
    # The file is a real attack: the ordinary unpickler does run it.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_a_training_state_that_would_run_code_is_refused_on_resume(tmp_path):
    marker = tmp_path / "marker"
    config = tiny_config(tmp_path)
    model = tiny_model()
    optimiser = torch.optim.AdamW(model.parameters())
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=4)
    state = tmp_path / "last.pt"
    torch.save({"config": config.raw, "epoch": 1, "state_dict": model.state_dict(), "averaged": None,
                "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                "numpy_rng": RunsCode(payloads(marker)["Path.touch"]), "torch_rng": torch.get_rng_state(),
                "history": [], "best": 0.5}, state)
    with pytest.raises(CheckpointError) as excinfo:
        restore_training_state(state, config, model, None, optimiser, schedule, np.random.default_rng(0))
    one_line_error(excinfo, state, "holds objects other than tensors and plain data")
    assert not marker.exists()


@pytest.mark.parametrize("key", ["arch", "model_args", "state_dict"])
def test_a_checkpoint_missing_a_key_is_named(tmp_path, capsys, key):
    path = tmp_path / "model.pt"
    checkpoint = old_format(tiny_model())
    del checkpoint[key]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(path)
    one_line_error(excinfo, path, f"no '{key}'")
    if key != "state_dict":  # the baseline needs only the architecture
        with pytest.raises(CheckpointError, match=f"no '{key}'"):
            random_init_like(path)
    # Given as the training's directory, on the command line: one line, no KeyError traceback.
    assert main(["evaluate", "importance", "--model", str(tmp_path), "--data", str(tmp_path / "no_data")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and f"no '{key}'" in err, err


def test_a_checkpoint_of_another_kind_is_named(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(old_format(tiny_model(), kind="observer"), path)
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(path)
    one_line_error(excinfo, path, "not a two4two classifier checkpoint (it is a observer)")
    checkpoint = old_format(tiny_model())
    del checkpoint["kind"]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as excinfo:
        load_observer(path)
    one_line_error(excinfo, path, "not a two4two observer checkpoint (it has no 'kind')")
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path, "classifier")
    one_line_error(excinfo, path, "not a two4two classifier checkpoint")


def test_a_checkpoint_with_bad_values_is_named(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(old_format(tiny_model(), arch="vgg"), path)
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(path)
    one_line_error(excinfo, path, "arch: expected one of", "'vgg'")
    torch.save(old_format(tiny_model(), model_args={"depth": 3}), path)
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(path)
    one_line_error(excinfo, path, "model_args", "depth", "small_cnn")
    torch.save(old_format(tiny_model(), model_args={"width": 8}), path)  # weights of width 4
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(path)
    one_line_error(excinfo, path, "state_dict does not fit a small_cnn")


@pytest.mark.parametrize("content", ["random", "empty", "text", "tensor"])
def test_a_file_that_is_no_checkpoint_is_named(tmp_path, content):
    path = tmp_path / "model.pt"
    if content == "tensor":
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes({"random": np.random.default_rng(0).bytes(4096), "empty": b"", "text": b"weights: none\n"}[content])
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(path)
    message = one_line_error(excinfo, path)
    assert ("holds a Tensor, not a dict" if content == "tensor" else "not a readable checkpoint") in message


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_a_truncated_checkpoint_is_named(tmp_path, keep):
    whole, path = tmp_path / "whole.pt", tmp_path / "model.pt"
    save_model_checkpoint(whole, tiny_config(tmp_path), tiny_model().state_dict(), 1, {"accuracy": 0.5}, (16, 16))
    data = whole.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(path)
    one_line_error(excinfo, path, "not a readable checkpoint")
    assert isinstance(excinfo.value, Two4TwoError)
    assert load_classifier(whole) is not None  # the whole file is fine


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError) as excinfo:
        load_classifier(tmp_path)
    one_line_error(excinfo, tmp_path / "model.pt", "no such checkpoint")


def test_a_saved_checkpoint_is_plain_data_and_gives_the_same_logits(tmp_path):
    model = tiny_model()
    with torch.no_grad():  # batch-norm statistics that are not the initial ones, so they must travel too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    config = tiny_config(tmp_path)
    path = tmp_path / "out" / "model.pt"
    path.parent.mkdir()
    # numpy numbers, as a model's own validation record might give them
    validation = {"accuracy": np.float64(0.75), "bits_per_dim": np.float32(3.5), "counts": np.array([3, 1])}
    save_model_checkpoint(path, config, model.state_dict(), np.int64(2), validation, np.array([16, 16]))
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint) == {"kind", "arch", "model_args", "state_dict", "config", "training", "epoch", "validation", "resolution", "dataset"}
    assert checkpoint["validation"] == {"accuracy": 0.75, "bits_per_dim": 3.5, "counts": [3, 1]}
    assert type(checkpoint["validation"]["accuracy"]) is float and type(checkpoint["epoch"]) is int
    assert checkpoint["resolution"] == [16, 16] and checkpoint["training"]["batch_size"] == 8
    assert checkpoint_written_for(path, config)
    assert not checkpoint_written_for(path, tiny_config(tmp_path, seed=1))
    loaded = load_classifier(path.parent)
    x = images()
    assert np.array_equal(predict_logits(loaded, x), predict_logits(model, x))
    assert not np.array_equal(predict_logits(random_init_like(path), x), predict_logits(model, x))
    assert training_split_of(path) is None  # its dataset is not on disk


def test_a_checkpoint_of_the_old_writer_still_loads(tmp_path):
    """The writer before weights-only reading saved metadata that was plain already: its files load as they are."""
    model = tiny_model()
    path = tmp_path / "model.pt"
    torch.save(old_format(model), path)
    assert torch.load(path, weights_only=True)["arch"] == "small_cnn"
    x = images()
    assert np.array_equal(predict_logits(load_classifier(path), x), predict_logits(model, x))
    assert type(random_init_like(path)).__name__ == "SmallCNN"


def optimiser_and_schedule(model):
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    return optimiser, torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=10)


def trained_a_step(seed=0, ema=True):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    model = tiny_model(seed).train()
    optimiser, schedule = optimiser_and_schedule(model)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True) if ema else None
    model(torch.as_tensor(images(4), dtype=torch.float32).permute(0, 3, 1, 2) / 255).sum().backward()
    optimiser.step()
    schedule.step()
    if averaged is not None:
        averaged.update_parameters(model)
    return model, averaged, optimiser, schedule


@pytest.mark.parametrize("writer", ["current", "old"])
def test_a_training_state_resumes_the_generators_and_the_optimiser(tmp_path, writer):
    config = tiny_config(tmp_path, ema_decay=0.9)
    model, averaged, optimiser, schedule = trained_a_step()
    rng = np.random.default_rng(5)
    rng.random(3)
    history = [{"epoch": 1, "train_loss": np.float32(0.5), "val_accuracy": np.float64(0.75)}]
    path = tmp_path / "last.pt"
    if writer == "current":
        save_training_state(path, config, 1, model, averaged, optimiser, schedule, rng, history, np.float64(0.75))
    else:  # torch.save of the dict train_model wrote before (numpy's state was plain Python already)
        torch.save({"config": config.raw, "epoch": 1, "state_dict": model.state_dict(), "averaged": averaged.state_dict(),
                    "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(), "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "history": [{"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.75}],
                    "best": 0.75}, path)
    state = torch.load(path, weights_only=True)
    assert type(state["best"]) is float and type(state["history"][0]["train_loss"]) is float
    expected_numpy, expected_torch = rng.random(4), torch.rand(4)
    # A fresh training of the same config, then the state put back into it.
    fresh, fresh_averaged, fresh_optimiser, fresh_schedule = trained_a_step(seed=1)
    fresh_rng = np.random.default_rng(0)
    history_back, best, epoch = restore_training_state(path, config, fresh, fresh_averaged, fresh_optimiser, fresh_schedule, fresh_rng)
    assert (epoch, best) == (1, 0.75) and history_back[0]["val_accuracy"] == 0.75
    assert np.array_equal(fresh_rng.random(4), expected_numpy)
    assert torch.equal(torch.rand(4), expected_torch)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(fresh_averaged.state_dict().values(), averaged.state_dict().values()))
    assert fresh_schedule.state_dict() == schedule.state_dict()
    exp_avg = [s["exp_avg"] for s in optimiser.state_dict()["state"].values()]
    assert all(torch.equal(s["exp_avg"], e) for s, e in zip(fresh_optimiser.state_dict()["state"].values(), exp_avg))
    # A state of another config is refused in one line.
    with pytest.raises(CheckpointError) as excinfo:
        restore_training_state(path, tiny_config(tmp_path, ema_decay=0.9, seed=3), fresh, fresh_averaged, fresh_optimiser,
                               fresh_schedule, fresh_rng)
    one_line_error(excinfo, path, "was written for another config")


def test_a_training_state_missing_a_key_is_named(tmp_path):
    config = tiny_config(tmp_path)
    model, _, optimiser, schedule = trained_a_step(ema=False)
    path = tmp_path / "last.pt"
    torch.save({"config": config.raw, "epoch": 1, "state_dict": model.state_dict()}, path)
    with pytest.raises(CheckpointError) as excinfo:
        restore_training_state(path, config, model, None, optimiser, schedule, np.random.default_rng(0))
    one_line_error(excinfo, path, "no 'optimiser'", "'numpy_rng'")


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    """train_model on made-up 16 px images (label: the red channel is bright), not rendered ones."""
    import two4two.dataset

    def load_split_arrays(root, split, progress=True):
        x = images(8 if split == "train" else 4, seed=0 if split == "train" else 1)
        labels = x[..., 0].mean(axis=(1, 2)) > 127
        return x, [types.SimpleNamespace(label=bool(label), true_label=bool(label)) for label in labels]

    monkeypatch.setattr(two4two.dataset, "load_split_arrays", load_split_arrays)
    for split in ("train", "validation"):
        (tmp_path / "data" / split).mkdir(parents=True)
        (tmp_path / "data" / split / "parameters.jsonl").write_text("")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small train several times faster on one thread than on two busy ones
    yield
    torch.set_num_threads(threads)


def test_what_train_model_writes_loads_weights_only_and_resumes(tmp_path, fake_data, monkeypatch):
    whole = tiny_config(tmp_path, ema_decay=0.5)
    whole.output_dir = tmp_path / "whole"
    training.train_model(whole, progress=False)
    for name in ("model.pt", "last.pt"):
        torch.load(whole.output_dir / name, weights_only=True)  # raises if anything but tensors and plain data
    kept = torch.load(whole.output_dir / "model.pt", weights_only=True)
    assert kept["kind"] == "classifier" and kept["resolution"] == [16, 16]
    loaded = load_classifier(whole.output_dir)  # the directory stands for its model.pt: the kept weights
    assert not loaded.training
    assert all(torch.equal(v, kept["state_dict"][k]) for k, v in loaded.state_dict().items())
    # Cut after the first epoch, then resumed: the same weights as the whole run.
    cut = tiny_config(tmp_path, ema_decay=0.5)
    cut.output_dir = tmp_path / "cut"
    original = training.validation_record
    calls = {"n": 0}

    def stop_after_one(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "validation_record", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        training.train_model(cut, progress=False)
    monkeypatch.setattr(training, "validation_record", original)
    assert torch.load(cut.output_dir / "last.pt", weights_only=True)["epoch"] == 1
    training.train_model(cut, progress=False, resume=True)
    a = torch.load(whole.output_dir / "last.pt", weights_only=True)
    b = torch.load(cut.output_dir / "last.pt", weights_only=True)
    assert b["epoch"] == 2
    assert all(torch.allclose(a["state_dict"][k].float(), b["state_dict"][k].float(), atol=1e-6) for k in a["state_dict"])
    assert all(torch.allclose(a["averaged"][k].float(), b["averaged"][k].float(), atol=1e-6) for k in a["averaged"])
    assert [h["train_loss"] for h in a["history"]] == pytest.approx([h["train_loss"] for h in b["history"]], rel=1e-6)
