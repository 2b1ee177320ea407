"""Checkpoints: a folder of ``config.json`` + ``model.safetensors`` (+ optimizer and state for
resuming, + ``metrics.jsonl``). Written atomically, loaded into a ``Bundle``. No pickle.

A checkpoint is written to ``NAME.tmp-<pid>/`` and then swapped into place with renames; if a
crash leaves only ``NAME.old-*``, loading falls back to it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from core.model import Model, ModelArgs
from core.tokenizer import Tokenizer

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
METRICS = "metrics.jsonl"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or inconsistent; the message names the file."""


@dataclass
class PropertyScale:
    """How one property is normalised for the model, plus the range the training data covers."""

    mean: float
    std: float
    lo: float  # 0.5th percentile of the training split
    hi: float  # 99.5th percentile of the training split

    def normalise(self, value: float) -> float:
        return (value - self.mean) / self.std

    def denormalise(self, value: float) -> float:
        return value * self.std + self.mean


@dataclass
class Bundle:
    """Everything generation needs: the model (evaluated, read-only), tokenizer and scaling."""

    model: Model
    tokenizer: Tokenizer
    args: ModelArgs
    scales: dict[str, PropertyScale]
    meta: dict = field(default_factory=dict)  # training data identity, run info, metrics
    path: Path | None = None

    @property
    def properties(self) -> list[str]:
        return list(self.args.properties)


def config_dict(bundle: Bundle) -> dict:
    """The JSON-serialisable content of ``config.json``."""
    return {
        "format": "molscope-checkpoint/1",
        "model": bundle.args.__dict__,
        "tokenizer": bundle.tokenizer.to_dict(),
        "properties": {k: v.__dict__ for k, v in bundle.scales.items()},
        "meta": bundle.meta,
    }


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False))


def save_checkpoint(
    out: Path | str,
    bundle: Bundle,
    optimizer_state: dict[str, mx.array] | None = None,
    state: dict | None = None,
) -> Path:
    """Write ``bundle`` (and optionally optimizer + training state) to ``out`` atomically.

    Raises CheckpointError on a non-finite weight (nothing is written) or a disk error (the
    previous checkpoint stays intact).
    """
    out = Path(out)
    weights = dict(tree_flatten(bundle.model.parameters()))
    for name, value in weights.items():
        if not bool(mx.all(mx.isfinite(value)).item()):
            raise CheckpointError(f"refusing to save: parameter {name} is not finite")
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    old = out.parent / f"{out.name}.old-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        mx.save_safetensors(str(tmp / WEIGHTS), weights)
        if optimizer_state:
            mx.save_safetensors(str(tmp / OPTIMIZER), optimizer_state)
        if state is not None:
            _write_json(tmp / STATE, state)
        if (out / METRICS).exists():
            shutil.copy2(out / METRICS, tmp / METRICS)
        _write_json(tmp / CONFIG, config_dict(bundle))  # last: its presence marks completeness
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.rename(old, out)
        raise CheckpointError(f"could not write checkpoint {out}: {exc.strerror or exc}") from exc
    return out


def resolve(path: Path | str) -> Path:
    """The folder to load: ``path`` itself, or a complete ``path.old-*`` left by a crash."""
    path = Path(path)
    if (path / CONFIG).exists():
        return path
    for old in sorted(path.parent.glob(f"{path.name}.old-*")):
        if (old / CONFIG).exists():
            return old
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    raise CheckpointError(f"{path / CONFIG} is missing")


def read_config(path: Path | str) -> dict:
    """Parse and check ``config.json`` of a checkpoint folder."""
    file = resolve(path) / CONFIG
    try:
        config = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file} is not valid JSON (line {exc.lineno})") from exc
    if not isinstance(config, dict) or not {"model", "tokenizer", "properties"} <= set(config):
        raise CheckpointError(f"{file} lacks 'model', 'tokenizer' or 'properties'")
    return config


def _check_safetensors(file: Path) -> None:
    """Reject a truncated or garbled safetensors file with a clear message."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            header_len = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(header_len)) if header_len < size else None
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file} is not a safetensors file (corrupt header)")
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end != size:
        raise CheckpointError(
            f"{file} is truncated ({size} bytes, expected {8 + header_len + end})"
        )


def load_checkpoint(path: Path | str) -> Bundle:
    """Load a checkpoint folder into a ready, evaluated ``Bundle``.

    >>> bundle = load_checkpoint("checkpoints/default")  # doctest: +SKIP
    """
    folder = resolve(path)
    config = read_config(folder)
    try:
        args = ModelArgs.from_dict(config["model"])
        tokenizer = Tokenizer.from_dict(config["tokenizer"])
        scales = {k: PropertyScale(**v) for k, v in config["properties"].items()}
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{folder / CONFIG} has invalid fields: {exc}") from exc
    if args.vocab_size != len(tokenizer) or list(scales) != list(args.properties):
        raise CheckpointError(f"{folder / CONFIG}: vocabulary or properties do not match")
    if any(not math.isfinite(s.std) or s.std <= 0 for s in scales.values()):
        raise CheckpointError(f"{folder / CONFIG}: property scales must be finite and positive")
    weights_file = folder / WEIGHTS
    if not weights_file.exists():
        raise CheckpointError(f"{weights_file} is missing")
    _check_safetensors(weights_file)
    model = Model(args)
    try:
        model.load_weights(str(weights_file), strict=True)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_file} does not fit the config: {exc}") from exc
    model.eval()
    mx.eval(model.parameters())  # evaluated here so other threads can share it
    return Bundle(model, tokenizer, args, scales, config.get("meta", {}), folder)


def load_training_state(path: Path | str) -> tuple[dict, dict[str, mx.array]]:
    """``state.json`` and the optimizer tensors of a checkpoint, for ``--resume``."""
    folder = resolve(path)
    try:
        state = json.loads((folder / STATE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / STATE} cannot be read: {exc}") from exc
    opt_file = folder / OPTIMIZER
    opt = {}
    if opt_file.exists():
        _check_safetensors(opt_file)
        opt = mx.load(str(opt_file))
    return state, opt


def read_metrics(path: Path | str) -> list[dict]:
    """Rows of ``metrics.jsonl``; a torn or garbled line (from a crash) is skipped."""
    file = Path(path) / METRICS
    rows = []
    if not file.exists():
        return rows
    for line in file.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def list_checkpoints(root: Path | str = "checkpoints") -> dict[str, str | None]:
    """Every folder under ``root`` that looks like a checkpoint -> None if it loads, else why."""
    found: dict[str, str | None] = {}
    root = Path(root)
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if ".tmp-" in folder.name or ".old-" in folder.name:
            continue
        if not any((folder / name).exists() for name in (CONFIG, WEIGHTS)):
            continue
        try:
            read_config(folder)
            _check_safetensors(folder / WEIGHTS)
            found[folder.name] = None
        except CheckpointError as exc:
            found[folder.name] = str(exc)
    return found


def model_nbytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters."""
    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))
