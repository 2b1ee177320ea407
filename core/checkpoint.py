"""Checkpoints: a folder of ``config.json`` + ``model.safetensors`` (+ optimizer and state for
resuming, + ``metrics.jsonl``). Written atomically, loaded into a ``Bundle``. No pickle.

A checkpoint is written to ``NAME.tmp-<pid>/`` (``config.json`` last, itself by rename, so its
presence means the folder is complete) and then swapped into place with two renames. If a crash
leaves no complete ``NAME``, loading falls back to the newest complete ``NAME.old-*`` or
``NAME.tmp-*``, and resuming moves it back into place; the next save removes what the crash left.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import struct
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from core.errors import UserError
from core.model import Model, ModelArgs
from core.procstat import stat_fields
from core.tokenizer import Tokenizer

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
METRICS = "metrics.jsonl"
LEFTOVER = re.compile(r"(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)")  # what a crashed save leaves


class CheckpointError(UserError, RuntimeError):
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

    @property
    def token_limit(self) -> int:
        """The most tokens a molecule gets by default: one more than the longest SELFIES the
        decoder was trained on (``meta.longest_trained`` symbols), the token written at the
        last position training reached (there it learned [EOS]; the positions after it were
        never trained), else the position table's ``max_len``.

        >>> from core.model import ModelArgs
        >>> args = ModelArgs(vocab_size=8, max_len=40)
        >>> Bundle(None, None, args, {}, {"longest_trained": 31}).token_limit
        32
        >>> Bundle(None, None, args, {}).token_limit
        40
        """
        trained = self.meta.get("longest_trained")
        return self.args.max_len if trained is None else min(self.args.max_len, trained + 1)

    def normalise_properties(self, values: np.ndarray) -> np.ndarray:
        """Property values (..., P) in ``properties`` order, in real units -> float32 in the
        model's normalised units (the training split's mean and σ)."""
        mean = np.array([self.scales[p].mean for p in self.properties], dtype=np.float32)
        std = np.array([self.scales[p].std for p in self.properties], dtype=np.float32)
        return ((np.asarray(values, dtype=np.float32) - mean) / std).astype(np.float32)

    def position_reads(self, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """What closed-loop decoder positions read (..., P) float32: the normalised
        properties of the molecule so far, ``values`` (..., P) in real units, followed for a
        model that reads the derivation by its ``codes`` (..., 4) (``core.derivation``)."""
        normal = self.normalise_properties(values)
        if not self.args.derivation:
            return normal
        return np.concatenate([normal, np.asarray(codes, dtype=np.float32)], axis=-1)


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


def _leftovers(out: Path) -> list[Path]:
    """``out.tmp-PID`` and ``out.old-PID`` folders beside ``out``."""
    found = []
    for folder in out.parent.glob(glob.escape(out.name) + ".*-*"):
        leftover = LEFTOVER.fullmatch(folder.name)
        if leftover and leftover["name"] == out.name and folder.is_dir():
            found.append(folder)
    return found


def _writer_alive(folder: Path) -> bool:
    """Whether the process whose pid names a leftover folder still runs (it may be saving).
    A process with that pid that started after the folder was last changed is another one:
    pids come round again (Linux's default pid_max is 32,768, and threads take ids too)."""
    pid = int(LEFTOVER.fullmatch(folder.name)["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    started = _process_start(pid)
    try:
        return started is None or started <= folder.stat().st_mtime + 1.0
    except OSError:
        return False


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from Linux's /proc; None
    where that cannot be read."""
    try:
        ticks = int(stat_fields(pid)[19])  # field 22: start time in clock ticks after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _saved_step(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / STATE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_leftovers(out: Path, step: int | None) -> None:
    """Delete what crashed saves of ``out`` left: unfinished folders, and finished ones that are
    not further along than ``step`` (of the checkpoint just written; None: keep finished ones)."""
    for folder in _leftovers(out):
        if _writer_alive(folder):
            continue
        if (folder / CONFIG).exists():
            theirs = _saved_step(folder)
            if step is None or theirs is None or theirs > step:
                continue
        _discard(folder)


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder, its ``config.json`` first: a crash partway leaves an
    incomplete folder (removed by a later save), never one that looks complete without its
    weights."""
    try:
        (folder / CONFIG).unlink()
    except OSError:
        pass  # not there, or the folder is gone
    shutil.rmtree(folder, ignore_errors=True)


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
        _discard(tmp)
        tmp.mkdir()
        mx.save_safetensors(str(tmp / WEIGHTS), weights)
        if optimizer_state:
            mx.save_safetensors(str(tmp / OPTIMIZER), optimizer_state)
        if state is not None:
            _write_json(tmp / STATE, state)
        if (out / METRICS).exists():
            shutil.copy2(out / METRICS, tmp / METRICS)
        # last, and whole or not at all: its presence marks the folder complete
        _write_json(tmp / f"{CONFIG}.part", config_dict(bundle))
        _sync_files(tmp)  # on disk before the folder can be taken as complete (power loss)
        os.rename(tmp / f"{CONFIG}.part", tmp / CONFIG)
        _sync_path(tmp)
        if out.exists():
            _discard(old)  # left by a dead process that had our pid
            os.rename(out, old)
        os.rename(tmp, out)
        _sync_path(out.parent)
        _discard(old)
    except (OSError, RuntimeError) as exc:  # MLX reports a failed write as a RuntimeError
        _discard(tmp)
        if old.exists() and not out.exists():
            os.rename(old, out)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CheckpointError(f"could not write checkpoint {out}: {reason}") from exc
    _remove_leftovers(out, None if state is None else _saved_step(out))
    return out


def _sync_path(path: Path) -> None:
    """``fsync`` one file or folder (a folder: its entries, e.g. after a rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_files(folder: Path) -> None:
    """``fsync`` every file in ``folder``."""
    for item in folder.iterdir():
        if item.is_file():
            _sync_path(item)


def resolve(path: Path | str) -> Path:
    """The folder to load: ``path`` itself or, when a crash interrupted a save, the newest
    complete ``path.old-*`` / ``path.tmp-*`` it left."""
    path = Path(path)
    if (path / CONFIG).exists():
        return path
    complete = [p for p in _leftovers(path) if (p / CONFIG).exists()]
    if complete:
        return max(complete, key=lambda p: (p / CONFIG).stat().st_mtime_ns)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    raise CheckpointError(f"{path / CONFIG} is missing")


def has_checkpoint(path: Path | str) -> bool:
    """Whether ``path`` holds a complete checkpoint, or a complete copy that a crash left
    between the renames of a swap (``resolve``).

    >>> has_checkpoint("/nonexistent")
    False
    """
    try:
        resolve(path)
    except CheckpointError:
        return False
    return True


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
    """Reject a missing, truncated or garbled safetensors file with a clear message."""
    if not file.is_file():
        raise CheckpointError(f"{file} is missing")
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
    """``state.json`` and the optimizer tensors of a checkpoint, for ``--resume``.

    If a crash interrupted a save, the checkpoint it fell back to is moved back to ``path``
    first (an incomplete ``path`` is set aside as a leftover), so training goes on there.
    """
    path = Path(path)
    folder = resolve(path)
    if folder != path:
        try:
            if path.exists():
                os.rename(path, path.parent / f"{path.name}.old-{os.getpid()}")
            os.rename(folder, path)
        except OSError as exc:
            raise CheckpointError(f"cannot move {folder} back to {path}: {exc}") from exc
        folder = path
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
    """Rows of ``metrics.jsonl``; a torn or garbled line (from a crash) is skipped with a
    warning."""
    file = Path(path) / METRICS
    rows = []
    if not file.exists():
        return rows
    skipped = 0
    for line in file.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    if skipped:
        lines = "line" if skipped == 1 else "lines"
        warnings.warn(
            f"{file}: skipped {skipped} unreadable {lines} (a crash can tear the last one)",
            stacklevel=2,
        )
    return rows


def append_metrics(path: Path | str, row: dict) -> None:
    """Add ``row`` to the ``metrics.jsonl`` of the checkpoint folder ``path``."""
    with open(Path(path) / METRICS, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def truncate_metrics(path: Path | str, step: int) -> None:
    """Drop the rows logged after ``step`` (a resumed run logs them again)."""
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = Path(path) / f"{METRICS}.tmp-{os.getpid()}"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, Path(path) / METRICS)  # a kill mid-write never empties the run's history


def list_checkpoints(root: Path | str = "checkpoints") -> dict[str, str | None]:
    """Every folder under ``root`` that looks like a checkpoint -> None if it loads, else why."""
    found: dict[str, str | None] = {}
    root = Path(root)
    if not root.is_dir():
        return found
    names = set()
    for folder in (p for p in root.iterdir() if p.is_dir()):
        leftover = LEFTOVER.fullmatch(folder.name)
        if leftover:  # listed under its own name when a crash left it as the only copy
            if (folder / CONFIG).exists():
                names.add(leftover["name"])
        elif any((folder / name).exists() for name in (CONFIG, WEIGHTS)):
            names.add(folder.name)
    for name in sorted(names):
        try:
            folder = resolve(root / name)
            read_config(folder)
            _check_safetensors(folder / WEIGHTS)
            found[name] = None
        except CheckpointError as exc:
            found[name] = str(exc)
    return found


def model_nbytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters."""
    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))
