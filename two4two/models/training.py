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

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from two4two.errors import ConfigError, Two4TwoError
from two4two.io import atomic_write_json

TRAINING_KEYS = {
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "weight_decay": float,
    "seed": int,
    "label_noise": bool,
    "train_split": str,
    "validation_split": str,
    "max_train_samples": int,
    "grad_clip": float,
    "augment_fliplr": bool,
    "channels_last": bool,
    "ema_decay": float,
}
TOP_KEYS = ("kind", "name", "data", "dataset_config", "model", "training", "output_dir")
KINDS = {"classifier": None, "observer": ("observer",)}  # kind → allowed archs (None: every classifier)


@dataclass
class TrainingSettings:
    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    label_noise: bool = True
    train_split: str = "train"
    validation_split: str = "validation"
    max_train_samples: int = 0  # 0: all
    grad_clip: float = 0.0  # max gradient norm; 0: no clipping
    augment_fliplr: bool = False  # mirror a random half of each batch: the animals are mirror-symmetric, the class stays
    channels_last: bool = False  # NHWC memory format: on this CPU it speeds the INN up (benchmarks/training_speed.py), not the others
    ema_decay: float = 0.0  # >0: validate and keep an exponential moving average of the weights (and BN statistics), not the last step's


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
    from two4two.models.classifier import ARCHITECTURES

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(f"{source}: {key}: unknown key; allowed: {', '.join(TOP_KEYS)}")
    for key in ("data", "output_dir"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{source}: {key}: expected a path, got {raw.get(key)!r}")
    kind = raw.get("kind", "classifier")
    if kind not in KINDS:
        raise ConfigError(f"{source}: kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    archs = KINDS[kind] or ARCHITECTURES
    model = raw.get("model") or {"arch": archs[0]}
    if not isinstance(model, dict) or model.get("arch", archs[0]) not in archs:
        raise ConfigError(f"{source}: model.arch: expected one of {', '.join(archs)} for kind {kind}, got {model!r}")
    model = {"arch": archs[0], **model}
    try:  # cheap, and names a bad model argument before any data is loaded
        build_model(**model)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: model: {exc}") from None
    training_raw = raw.get("training") or {}
    if not isinstance(training_raw, dict):
        raise ConfigError(f"{source}: training: expected a mapping")
    settings = {}
    for key, value in training_raw.items():
        expected = TRAINING_KEYS.get(key)
        if expected is None:
            raise ConfigError(f"{source}: training.{key}: unknown key; allowed: {', '.join(TRAINING_KEYS)}")
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok or (expected in (int, float) and value < 0):
            raise ConfigError(f"{source}: training.{key}: expected a non-negative {expected.__name__}, got {value!r}")
        settings[key] = value
    if settings.get("ema_decay", 0.0) >= 1.0:
        raise ConfigError(f"{source}: training.ema_decay: expected a number in [0, 1), got {settings['ema_decay']!r}")
    dataset_config = raw.get("dataset_config")
    return ModelConfig(
        kind=kind,
        name=raw.get("name", Path(source).stem),
        data=Path(raw["data"]),
        output_dir=Path(raw["output_dir"]),
        model=model,
        training=TrainingSettings(**settings),
        dataset_config=Path(dataset_config) if dataset_config else None,
        raw=raw,
    )


def pick_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _save_atomic(obj: Any, path: Path) -> None:
    import torch

    from two4two.io import atomic_write

    atomic_write(path, lambda fh: torch.save(obj, fh))


def accuracy_and_logits(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 256, device=None):
    """Accuracy against `labels` and the logits, evaluated in batches without gradients."""
    logits = predict_logits(model, images, batch_size, device)
    return float(((logits > 0) == labels.astype(bool)).mean()), logits


def predict_logits(model, images: np.ndarray, batch_size: int = 256, device=None) -> np.ndarray:
    """Logits of a module or any callable (image batch → one logit each) for uint8 images (N×H×W×3)."""
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
    accuracy, _ = accuracy_and_logits(model, images, np.array([p.true_label for p in params]), device=device)
    record = {"accuracy": accuracy, "score": accuracy}
    if hasattr(model, "bits_per_dim"):
        record["bits_per_dim"] = model.bits_per_dim(images)
    return record


def train_model(config: ModelConfig, progress: bool = True, resume: bool = False) -> Path:
    """Train, validating each epoch; returns the checkpoint path (best validation score).

    After every epoch the whole training state (weights, optimiser, schedule, random
    generators, history) goes to `last.pt`; `resume=True` continues from it, so a training
    cut off by the end of a session loses at most one epoch and ends where an uninterrupted
    one would have.
    """
    import torch
    from tqdm import tqdm

    from two4two.dataset import load_split_arrays
    from two4two.models.inputs import image_batch

    ts = config.training
    for split in (ts.train_split, ts.validation_split):
        if not (config.data / split / "parameters.jsonl").exists():
            hint = f"two4two train renders it from dataset_config {config.dataset_config}" if config.dataset_config else "render it first"
            raise Two4TwoError(f"data: {config.data} has no split {split!r}; {hint}")

    torch.manual_seed(ts.seed)
    rng = np.random.default_rng(ts.seed)
    device = pick_device()
    train_images, train_params = load_split_arrays(config.data, ts.train_split, progress=progress)
    if ts.max_train_samples:
        train_images, train_params = train_images[: ts.max_train_samples], train_params[: ts.max_train_samples]
    val_images, val_params = load_split_arrays(config.data, ts.validation_split, progress=progress)
    model_args = {k: v for k, v in config.model.items() if k != "arch"}
    model = build_model(config.model["arch"], **model_args).to(device)
    if ts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if hasattr(model, "training_targets"):
        train_targets = model.training_targets(train_params, ts.label_noise)
    else:
        train_targets = np.array([p.label if ts.label_noise else p.true_label for p in train_params], np.float32)
    optimiser = torch.optim.AdamW(model.parameters(), lr=ts.learning_rate, weight_decay=ts.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(train_images) / ts.batch_size)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=ts.learning_rate, total_steps=max(1, ts.epochs * steps_per_epoch)
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

    config.output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = config.output_dir / CHECKPOINT
    state_path = config.output_dir / "last.pt"
    history = []
    best = -math.inf  # scores may be negative (the observer's is −MSE)
    first_epoch = 1
    if resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        if state.get("config") != config.raw:
            raise Two4TwoError(f"{state_path}: was written for another config; train into another output_dir or delete it")
        model.load_state_dict(state["state_dict"])
        if averaged is not None:
            averaged.load_state_dict(state["averaged"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        history, best, first_epoch = state["history"], state["best"], state["epoch"] + 1
        print(f"resuming {config.name} after epoch {state['epoch']} of {ts.epochs}")
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
                x = image_batch(train_images[idx], device)
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
            _save_atomic(
                {
                    "kind": config.kind,
                    "arch": config.model["arch"],
                    "model_args": model_args,
                    "state_dict": kept.state_dict(),
                    "config": config.raw,
                    "training": asdict(ts),
                    "epoch": epoch,
                    "validation": validation,
                    "resolution": list(train_images.shape[2:0:-1]),
                    "dataset": str(config.data),
                },
                checkpoint_path,
            )
        atomic_write_json(config.output_dir / "history.json", history)
        _save_atomic(
            {
                "config": config.raw,
                "epoch": epoch,
                "state_dict": model.state_dict(),
                "averaged": averaged.state_dict() if averaged is not None else None,
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "best": best,
            },
            state_path,
        )
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


def load_model(path: str | Path, kind: str, device=None):
    import torch

    path = checkpoint_file(path)
    if not path.is_file():
        raise Two4TwoError(f"model: {path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location=device or "cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise Two4TwoError(f"model: {path}: not a readable checkpoint ({exc})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != kind:
        found = checkpoint.get("kind") if isinstance(checkpoint, dict) else None
        raise Two4TwoError(f"model: {path}: not a two4two {kind} checkpoint" + (f" (it is a {found})" if found else ""))
    model = build_model(checkpoint["arch"], **checkpoint["model_args"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device or "cpu").eval()


def random_init_like(path: str | Path):
    """A freshly initialised model of a checkpoint's architecture (the untrained baseline)."""
    import torch

    checkpoint = torch.load(checkpoint_file(path), map_location="cpu", weights_only=False)
    return build_model(checkpoint["arch"], **checkpoint["model_args"]).eval()


def training_split_of(path: str | Path):
    """The parameters a checkpoint was trained on, if that dataset is still on disk (else None)."""
    import torch

    from two4two.dataset import read_split

    checkpoint = torch.load(checkpoint_file(path), map_location="cpu", weights_only=False)
    root = Path(checkpoint.get("dataset", ""))
    split = checkpoint.get("training", {}).get("train_split", "train")
    return read_split(root, split) if (root / split / "parameters.jsonl").exists() else None


def load_train_config(path: str | Path) -> ModelConfig:
    from two4two.config import read_yaml

    path = Path(path)
    raw = read_yaml(path)
    kind = raw.get("kind") if isinstance(raw, dict) else None
    if kind not in KINDS:
        raise ConfigError(f"{path}: kind: expected one of {', '.join(KINDS)} for two4two train, got {kind!r}")
    return parse_model_config(raw, str(path))
