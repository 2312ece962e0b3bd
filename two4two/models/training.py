"""`two4two train CONFIG` for classifiers and the observer: config, data in memory, loop, checkpoints.

    kind: classifier                           # or observer (arch: observer)
    name: small_cnn_study2022_64px
    data: data/study2022_64px                  # a rendered dataset directory
    dataset_config: configs/study2022_64px.yaml   # optional: `two4two train` renders it first if data is missing
    model: {arch: small_cnn, width: 16}
    training: {epochs: 8, batch_size: 128, learning_rate: 0.002, seed: 0}
    output_dir: models/small_cnn_study2022_64px

Labels are the stored ones, so the label noise planted by the dataset config
(`labeling_error`) is what the model sees; validation accuracy is against the true class.
A model may bring its own targets, objective and validation (`training_targets`,
`training_loss`, `validation_record`): the INN adds its likelihood, the observer regresses
every attribute.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from two4two.errors import CheckpointError, ConfigError, Two4TwoError
from two4two.io import atomic_write_json
from two4two.layout import has_split
from two4two.locks import exclusive
from two4two.schema import Fields, setting

# Settings whose allowed values are not "≥ 0": the rule and how an error states it.
TOP_KEYS = ("kind", "name", "data", "dataset_config", "model", "training", "output_dir")
KINDS = {"classifier": None, "observer": ("observer",)}  # kind → allowed archs (None: every classifier)


@dataclass
class TrainingSettings:
    """A model config's `training:`; every number ≥ 0 unless its field says otherwise."""

    epochs: int = setting(8, low=1)  # zero of these trains nothing
    batch_size: int = setting(128, low=1)
    learning_rate: float = setting(2e-3, low=0)
    weight_decay: float = setting(1e-4, low=0)
    seed: int = setting(0, low=0)
    label_noise: bool = setting(True)
    train_split: str = setting("train")
    validation_split: str = setting("validation")
    max_train_samples: int = setting(0, low=0)  # 0: all
    grad_clip: float = setting(0.0, low=0)  # max gradient norm; 0: no clipping
    augment_fliplr: bool = setting(False)  # mirror a random half of each batch: the animals are mirror-symmetric, the class stays
    augment_shift: int = setting(0, low=0)  # move each image by up to this many pixels (edges repeated): the class stays, the memorised image does not
    channels_last: bool = setting(False)  # NHWC memory format: on this CPU it speeds the INN up (benchmarks/training_speed.py), not the others
    # >0: validate and keep an exponential moving average of the weights (and BN statistics), not the last step's
    ema_decay: float = setting(0.0, low=0, check=lambda v: v < 1, expected="a number in [0, 1)")
    # >0: the linear head's own peak rate (the INN's classifier on φ, as the paper trained it); 0: learning_rate
    head_learning_rate: float = setting(0.0, low=0)
    # share of all steps over which the rate rises to its peak before the cosine decay
    warmup_fraction: float = setting(0.3, check=lambda v: 0 < v < 1, expected="a number in (0, 1)")


@dataclass
class ModelConfig:
    name: str
    data: Path
    output_dir: Path
    model: dict[str, Any] = field(default_factory=lambda: {"arch": "small_cnn"})
    training: TrainingSettings = field(default_factory=TrainingSettings)
    dataset_config: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    kind: str = "classifier"


def build_model(arch: str = "small_cnn", **kwargs):
    """A freshly initialised model of any trainable architecture (classifiers, the observer)."""
    if arch == "observer":
        from two4two.models.observer import Observer

        return Observer(**kwargs)
    from two4two.models.classifier import build_classifier

    return build_classifier(arch, **kwargs)


def parse_model_config(raw: Any, source: str = "<config>") -> ModelConfig:
    from torch import nn

    from two4two.config import config_file
    from two4two.models.classifier import ARCHITECTURES

    top = Fields(raw, source, allowed=TOP_KEYS, required=("data", "output_dir"), what="a mapping at the top level")
    for key in ("data", "output_dir"):
        top.check(isinstance(raw[key], str) and bool(raw[key]), key, "a path")
    kind = top.choice("kind", tuple(KINDS), "classifier")
    archs = KINDS[kind] or ARCHITECTURES
    model = raw.get("model") or {"arch": archs[0]}
    arch = model.get("arch", archs[0]) if isinstance(model, dict) else None
    if not isinstance(arch, str) or arch not in archs:
        raise top.error("model.arch", arch if isinstance(model, dict) else model, f"one of {', '.join(archs)} for kind {kind}")
    model = {"arch": archs[0], **model}
    try:  # cheap, and names a bad model argument before any data is loaded
        built = build_model(**model)
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:  # RuntimeError: a width too big to allocate
        raise ConfigError(f"{source}: model: {_one_line(exc)}") from None
    training = top.mapping("training", allowed=[f.name for f in dataclasses.fields(TrainingSettings)])
    settings = {f.name: training.setting(f) for f in dataclasses.fields(TrainingSettings) if f.name in training.raw}
    if kind == "observer" and settings.get("augment_shift"):
        raise training.error("training.augment_shift", settings["augment_shift"], "0 for an observer, which reads the animal's position back")
    if settings.get("head_learning_rate") and not isinstance(getattr(built, "head", None), nn.Linear):
        raise training.error("training.head_learning_rate", settings["head_learning_rate"],
                             f"0: only a model with a linear head on its features (arch inn) has its own rate; arch {model['arch']} has none")
    dataset_config = raw.get("dataset_config")
    top.check(dataset_config is None or isinstance(dataset_config, str), "dataset_config", "a path to a dataset config")
    if dataset_config:
        try:
            dataset_config = config_file(dataset_config, "dataset config")
        except ConfigError as exc:
            raise ConfigError(f"{source}: dataset_config: {exc}") from None
    return ModelConfig(
        kind=kind,
        name=top.text("name", Path(source).stem),
        data=Path(raw["data"]),
        output_dir=Path(raw["output_dir"]),
        model=model,
        training=TrainingSettings(**settings),
        dataset_config=dataset_config or None,
        raw=raw,
    )


def parameter_groups(model, settings: TrainingSettings) -> list[dict]:
    """The optimiser's groups: everything at learning_rate, or the head at its own rate."""
    if not settings.head_learning_rate:
        return [{"params": list(model.parameters()), "lr": settings.learning_rate}]
    head = {id(p) for p in model.head.parameters()}
    return [
        {"params": [p for p in model.parameters() if id(p) not in head], "lr": settings.learning_rate},
        {"params": list(model.head.parameters()), "lr": settings.head_learning_rate},
    ]


def _save_atomic(path: Path, plain: dict, **tensors) -> None:
    """A checkpoint file of `plain` made plain data (`_plain`) and `tensors` as they are, written atomically."""
    import torch

    from two4two.io import atomic_write

    atomic_write(path, lambda fh: torch.save({**_plain(plain), **tensors}, fh))


def _plain(value: Any) -> Any:
    """Metadata as JSON-like Python values (numpy numbers and arrays, paths, tuples, dates made
    plain), which torch's weights-only reader takes without allow-listing any class."""
    if isinstance(value, dict):
        return {k if type(k) in (str, int, float, bool) or k is None else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):  # a numpy scalar's tolist() is its Python value
        return _plain(value.tolist())
    if value is None:
        return value
    for plain in (bool, int, float, str):  # these and their subclasses (enums, numpy-like), which pickle as their class
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def save_model_checkpoint(path: Path, config: ModelConfig, state_dict, epoch: int, validation: dict, resolution) -> None:
    """The checkpoint kept of a training (`model.pt`): the weights as tensors, all else plain data,
    so read_checkpoint loads it without running any code."""
    model_args = {k: v for k, v in config.model.items() if k != "arch"}
    meta = {"kind": config.kind, "arch": config.model["arch"], "model_args": model_args, "config": config.raw,
            "training": asdict(config.training), "epoch": epoch, "validation": validation,
            "resolution": list(resolution), "dataset": str(config.data)}
    _save_atomic(path, meta, state_dict=state_dict)


STATE_KEYS = ("config", "epoch", "state_dict", "averaged", "optimiser", "schedule", "numpy_rng", "torch_rng", "history", "best")


def save_training_state(path: Path, config: ModelConfig, epoch: int, model, averaged, optimiser, schedule, rng, history, best) -> None:
    """The whole state of a training after an epoch (`last.pt`), for `--resume`: torch's state
    dicts and rng state as they are (tensors and numbers), numpy's generator state and the
    history as plain data."""
    import torch

    meta = {"config": config.raw, "epoch": epoch, "numpy_rng": rng.bit_generator.state, "history": history,
            "best": best}
    _save_atomic(path, meta, state_dict=model.state_dict(),
                 averaged=averaged.state_dict() if averaged is not None else None, optimiser=optimiser.state_dict(),
                 schedule=schedule.state_dict(), torch_rng=torch.get_rng_state())


def restore_training_state(path: Path, config: ModelConfig, model, averaged, optimiser, schedule, rng, device=None):
    """Puts a `last.pt` back into a training's objects (and torch's generator); returns (history,
    best, epoch). A state of another config, or one that does not fit, is refused in one line."""
    import torch

    needed = [key for key in STATE_KEYS if key != "averaged" or averaged is not None]  # states from before ema_decay have none
    state = read_checkpoint(path, keys=needed, device=device)
    if state["config"] != _plain(config.raw):
        raise CheckpointError(f"{path}: was written for another config; train into another output_dir or delete it")
    try:
        model.load_state_dict(state["state_dict"])
        if averaged is not None:
            averaged.load_state_dict(state["averaged"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        history, best, epoch = list(state["history"]), float(state["best"]), int(state["epoch"])
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot resume from it ({_one_line(exc)}); delete it to train afresh") from None
    return history, best, epoch


def predict_logits(model, images: np.ndarray, batch_size: int = 256, device=None) -> np.ndarray:
    """Logits of a module or any callable (image batch → one logit each) for uint8 images (N×H×W×3)
    or float ones in [0, 1]."""
    import torch

    from two4two.models.inputs import image_batch

    if isinstance(model, torch.nn.Module):
        model.eval()
        device = device or next(model.parameters(), torch.zeros(0)).device
    device = device or torch.device("cpu")
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = image_batch(images[start : start + batch_size], device)
            logits = torch.as_tensor(model(x)).reshape(-1)
            if logits.shape[0] != x.shape[0]:
                raise ValueError(f"model returned {logits.shape[0]} logits for {x.shape[0]} images; expected one per image")
            out.append(logits.double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def validation_record(model, images: np.ndarray, params, device=None) -> dict:
    """The model's own validation figures, or accuracy against the true class; `score` (higher
    is better) picks the checkpoint kept."""
    if hasattr(model, "validation_record"):
        return model.validation_record(images, params)
    labels = np.array([p.true_label for p in params]).astype(bool)
    accuracy = float(((predict_logits(model, images, device=device) > 0) == labels).mean())
    record = {"accuracy": accuracy, "score": accuracy}
    if hasattr(model, "bits_per_dim"):
        record["bits_per_dim"] = model.bits_per_dim(images)
    return record


def train_model(config: ModelConfig, progress: bool = True, resume: bool = False) -> Path:
    """Train, validating each epoch; returns the checkpoint path (best validation score).

    After every epoch the whole training state (weights, optimiser, schedule, random
    generators, history) goes to `last.pt`; `resume=True` continues from it, so a training
    cut off by the end of a session loses at most one epoch and ends where an uninterrupted
    one would have. The output directory's lock is held throughout: a second training
    into it is refused, naming the first's process (two4two.locks).
    """
    with exclusive(config.output_dir, "training"):
        return _train_locked(config, progress, resume)


def _train_locked(config: ModelConfig, progress: bool, resume: bool) -> Path:
    import torch
    from tqdm import tqdm

    from two4two.dataset import load_split_arrays
    from two4two.models.inputs import image_batch, shifted

    ts = config.training
    for split in (ts.train_split, ts.validation_split):
        if not has_split(config.data, split):
            hint = f"two4two train renders it from dataset_config {config.dataset_config}" if config.dataset_config else "render it first"
            raise Two4TwoError(f"data: {config.data} has no split {split!r}; {hint}")

    torch.manual_seed(ts.seed)
    rng = np.random.default_rng(ts.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_images, train_params = load_split_arrays(config.data, ts.train_split, progress=progress)
    if ts.max_train_samples:
        train_images, train_params = train_images[: ts.max_train_samples], train_params[: ts.max_train_samples]
    val_images, val_params = load_split_arrays(config.data, ts.validation_split, progress=progress)
    model_args = {k: v for k, v in config.model.items() if k != "arch"}
    model = build_model(config.model["arch"], **model_args).to(device)
    if ts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_targets = (model.training_targets(train_params, ts.label_noise) if hasattr(model, "training_targets")
                     else np.array([p.label if ts.label_noise else p.true_label for p in train_params], np.float32))
    groups = parameter_groups(model, ts)
    optimiser = torch.optim.AdamW(groups, lr=ts.learning_rate, weight_decay=ts.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(train_images) / ts.batch_size)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(  # warm-up, then cosine decay, per group
        optimiser, max_lr=[g["lr"] for g in groups], total_steps=max(1, ts.epochs * steps_per_epoch),
        pct_start=ts.warmup_fraction,
    )
    bce = torch.nn.BCEWithLogitsLoss()
    averaged = None
    if ts.ema_decay:  # the weights a noisy high-learning-rate run wanders around, averaged: what is validated and kept
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ts.ema_decay), use_buffers=True)
    kept = averaged.module if averaged is not None else model

    def loss_and_parts(x, y):  # a model may bring its own objective (the INN's likelihood + β·BCE)
        if hasattr(model, "training_loss"):
            loss, _, parts = model.training_loss(x, y)
            return loss, parts
        return bce(model(x), y), {}

    checkpoint_path = config.output_dir / CHECKPOINT
    state_path = config.output_dir / "last.pt"
    history = []
    best = -math.inf  # scores may be negative (the observer's is −MSE)
    first_epoch = 1
    if resume and state_path.exists():
        history, best, done = restore_training_state(state_path, config, model, averaged, optimiser, schedule, rng, device)
        first_epoch = done + 1
        print(f"resuming {config.name} after epoch {done} of {ts.epochs}")
    elif resume:
        print(f"{state_path}: not there; training from the first epoch")
    for epoch in range(first_epoch, ts.epochs + 1):
        model.train()
        order = rng.permutation(len(train_images))
        t0 = time.perf_counter()
        total_loss = 0.0
        part_sums: dict[str, float] = {}
        with tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{ts.epochs}", disable=not progress, unit="batch") as bar:
            for start in range(0, len(order), ts.batch_size):
                idx = order[start : start + ts.batch_size]
                batch = shifted(train_images[idx], ts.augment_shift, rng) if ts.augment_shift else train_images[idx]
                x = image_batch(batch, device)
                if ts.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                if ts.augment_fliplr:
                    flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device)
                    x = torch.where(flip[:, None, None, None], x.flip(3), x)
                y = torch.from_numpy(train_targets[idx]).to(device)
                loss, parts = loss_and_parts(x, y)
                optimiser.zero_grad()
                loss.backward()
                if ts.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), ts.grad_clip)
                optimiser.step()
                schedule.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                if not torch.isfinite(loss):
                    raise Two4TwoError(f"training diverged in epoch {epoch} (loss {float(loss)}); lower learning_rate or set grad_clip")
                total_loss += float(loss.detach()) * len(idx)
                for key, value in parts.items():
                    part_sums[key] = part_sums.get(key, 0.0) + value * len(idx)
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", **{k: f"{v:.3f}" for k, v in parts.items()})
        train_seconds = time.perf_counter() - t0
        validation = validation_record(kept, val_images, val_params, device)
        score = validation.pop("score")
        record = {"epoch": epoch, "train_loss": total_loss / len(order), "images_per_second": len(order) / train_seconds}
        record.update({f"train_{key}": value / len(order) for key, value in part_sums.items()})
        record.update({f"val_{key}": value for key, value in validation.items()})
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        shown = ", ".join(f"validation {k.replace('_', ' ')} {v:.4f}" for k, v in validation.items() if not k.startswith("mse_"))
        print(f"epoch {epoch}: train loss {record['train_loss']:.4f}, {shown} ({record['images_per_second']:.0f} images/s)")
        if score > best:
            best = score
            save_model_checkpoint(checkpoint_path, config, kept.state_dict(), epoch, validation, train_images.shape[2:0:-1])
        atomic_write_json(config.output_dir / "history.json", history)
        save_training_state(state_path, config, epoch, model, averaged, optimiser, schedule, rng, history, best)
    return checkpoint_path


def load_classifier(path: str | Path, device=None):
    """A trained classifier (eval mode) from a checkpoint written by train_model."""
    return load_model(path, "classifier", device)


def load_observer(path: str | Path, device=None):
    """A trained observer (eval mode) from a checkpoint written by train_model."""
    return load_model(path, "observer", device)


CHECKPOINT = "model.pt"  # in a training's output_dir: the best validation epoch


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint given as its file or as the training's output directory."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def checkpoint_dir(path: str | Path) -> Path:
    """The training's output directory of a checkpoint given either way (outputs go beside it)."""
    return checkpoint_file(path).parent


MODEL_KEYS = ("kind", "arch", "model_args", "state_dict")


def _one_line(exc: object, limit: int = 300) -> str:
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_checkpoint(path: str | Path, kind: str | None = None, keys=(), device=None) -> dict:
    """A checkpoint's dict, read by torch's weights-only unpickler (tensors and plain data only):
    a .pt file is a pickle, and any other reader runs whatever code the file names. Every
    problem — missing, truncated, foreign, holding objects, another kind, a missing key — is one
    CheckpointError naming the file."""
    import pickle
    import warnings

    import torch

    path = checkpoint_file(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on the pickle protocol of foreign files
            checkpoint = torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as exc:  # a truncated zip, an empty or foreign file, or a pickle asking for more than data
        named = isinstance(exc, pickle.UnpicklingError) and re.search(r"GLOBAL ([\w.]+)", str(exc))
        if named:  # the unpickler refused a class or function the file asks for
            raise CheckpointError(
                f"{path}: holds objects other than tensors and plain data ({named.group(1)}), so it is not loaded "
                "(reading it could run code); two4two checkpoints hold only tensors, numbers, strings, lists and dicts: "
                "retrain it with two4two train"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint: truncated, or not written by torch.save ({_one_line(exc)})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a two4two checkpoint (it holds a {type(checkpoint).__name__}, not a dict)")
    if kind is not None and checkpoint.get("kind") != kind:
        found = checkpoint.get("kind")
        shown = f" (it is a {found})" if isinstance(found, str) else " (it has no 'kind')" if found is None else f" (its kind is a {type(found).__name__})"
        raise CheckpointError(f"{path}: not a two4two {kind} checkpoint{shown}")
    missing = [repr(key) for key in keys if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a complete checkpoint: no {', '.join(missing)} (expected {', '.join(keys)})")
    return checkpoint


def checkpoint_written_for(path: str | Path, config: ModelConfig) -> bool:
    """Whether a checkpoint (model.pt or last.pt) was written by a training of this config."""
    return read_checkpoint(path, keys=("config",))["config"] == _plain(config.raw)


def _build_from(checkpoint: dict, path: Path, kind: str | None = None):
    """The (untrained) model a checkpoint's arch and model_args describe; a bad one in one line."""
    from two4two.models.classifier import ARCHITECTURES

    arch, args = checkpoint["arch"], checkpoint["model_args"]
    allowed = (KINDS.get(kind) or ARCHITECTURES) if kind else ARCHITECTURES + ("observer",)
    if arch not in allowed:
        raise CheckpointError(f"{path}: arch: expected one of {', '.join(allowed)}, got {_one_line(repr(arch), 80)}")
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise CheckpointError(f"{path}: model_args: expected a mapping of argument names, got {_one_line(repr(args), 80)}")
    try:
        return build_model(arch, **args)
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: model_args {_one_line(repr(args), 120)} do not build a {arch} ({_one_line(exc)})") from None


def load_model(path: str | Path, kind: str, device=None):
    """A trained model of `kind` (eval mode) from a checkpoint written by train_model."""
    path = checkpoint_file(path)
    checkpoint = read_checkpoint(path, kind, MODEL_KEYS, device)
    model = _build_from(checkpoint, path, kind)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: state_dict does not fit a {checkpoint['arch']} with model_args {_one_line(repr(checkpoint['model_args']), 120)} ({_one_line(exc)})") from None
    return model.to(device or "cpu").eval()


def random_init_like(path: str | Path):
    """A freshly initialised model of a checkpoint's architecture (the untrained baseline)."""
    path = checkpoint_file(path)
    return _build_from(read_checkpoint(path, keys=("arch", "model_args")), path).eval()


def training_split_of(path: str | Path):
    """The parameters a checkpoint was trained on, if that dataset is still on disk (else None)."""
    from two4two.dataset import read_split

    checkpoint = read_checkpoint(path)
    training = checkpoint.get("training")
    split = training.get("train_split", "train") if isinstance(training, dict) else "train"
    dataset = checkpoint.get("dataset")
    if not isinstance(dataset, str) or not dataset or not isinstance(split, str):
        return None
    root = Path(dataset)
    return read_split(root, split) if has_split(root, split) else None


def load_train_config(path: str | Path) -> ModelConfig:
    from two4two.config import read_yaml

    path = Path(path)
    raw = read_yaml(path)
    kind = raw.get("kind") if isinstance(raw, dict) else None
    if kind not in KINDS:
        raise ConfigError(f"{path}: kind: expected one of {', '.join(KINDS)} for two4two train, got {kind!r}")
    return parse_model_config(raw, str(path))
