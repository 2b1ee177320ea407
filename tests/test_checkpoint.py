"""Checkpoints: save -> load gives identical outputs; corrupt files give one clear error."""

import json
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from tiny import tiny_bundle

from core.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_metrics,
    save_checkpoint,
)


def _logits(bundle):
    ids = mx.array([[4, 5, 6, 2]])
    valid = mx.ones((1, 4), dtype=mx.bool_)
    props, present = mx.array([[0.3, -0.2]]), mx.ones((1, 2))
    return np.array(bundle.model(ids, valid, props, present, mx.zeros((1, 4)), 1)[0])


def test_save_load_gives_identical_logits(tmp_path):
    bundle = tiny_bundle()
    save_checkpoint(tmp_path / "ck", bundle, state={"step": 3})
    loaded = load_checkpoint(tmp_path / "ck")
    assert np.array_equal(_logits(bundle), _logits(loaded))
    assert loaded.tokenizer == bundle.tokenizer and loaded.scales == bundle.scales
    assert json.loads((tmp_path / "ck" / "state.json").read_text())["step"] == 3


def test_overwrite_keeps_metrics_and_leaves_no_temp_folders(tmp_path):
    bundle = tiny_bundle()
    save_checkpoint(tmp_path / "ck", bundle)
    (tmp_path / "ck" / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "lo')
    save_checkpoint(tmp_path / "ck", bundle)
    assert [r["step"] for r in read_metrics(tmp_path / "ck")] == [1]  # torn line skipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the saving code catches it."""


def test_crash_while_deleting_the_previous_checkpoint_leaves_nothing_that_looks_complete(
    tmp_path, monkeypatch
):
    """Killed partway through deleting the checkpoint a save replaced (its files go one by
    one, config.json last): what is left must not pass for a complete checkpoint."""
    bundle = tiny_bundle()
    save_checkpoint(tmp_path / "ck", bundle, state={"step": 1})
    rmtree = shutil.rmtree

    def dies_deleting_old(path, *args, **kwargs):
        if ".old-" in Path(path).name and Path(path).exists():
            for file in Path(path).iterdir():
                if file.name != "config.json":  # the directory listing put it last
                    file.unlink()
            raise Killed
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", dies_deleting_old)
    with pytest.raises(Killed):
        save_checkpoint(tmp_path / "ck", bundle, state={"step": 2})
    monkeypatch.undo()
    left = [p for p in tmp_path.iterdir() if p.name.startswith("ck.")]
    assert left  # the kill did leave a folder behind
    assert not any((p / "config.json").exists() for p in left)
    assert json.loads((tmp_path / "ck" / "state.json").read_text())["step"] == 2


def test_crash_between_renames_falls_back_to_old(tmp_path):
    bundle = tiny_bundle()
    save_checkpoint(tmp_path / "ck", bundle)
    (tmp_path / "ck").rename(tmp_path / "ck.old-123")
    assert load_checkpoint(tmp_path / "ck").path.name == "ck.old-123"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.safetensors").write_bytes(
            (d / "model.safetensors").read_bytes()[:-100]), "truncated"),
        (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "not a safetensors"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors is missing"),
    ],
)  # fmt: skip
def test_corrupt_checkpoint_gives_clear_error(tmp_path, damage, message):
    save_checkpoint(tmp_path / "ck", tiny_bundle())
    damage(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "ck")
    assert message in list_checkpoints(tmp_path)["ck"]  # listed as broken, with the reason


def test_non_finite_weights_are_never_saved(tmp_path):
    bundle = tiny_bundle()
    bundle.model.decoder.head.weight = mx.full(bundle.model.decoder.head.weight.shape, mx.nan)
    with pytest.raises(CheckpointError, match="not finite"):
        save_checkpoint(tmp_path / "ck", bundle)
    assert not (tmp_path / "ck").exists()


def test_read_only_target_keeps_previous_checkpoint(tmp_path):
    bundle = tiny_bundle()
    save_checkpoint(tmp_path / "ro" / "ck", bundle)
    (tmp_path / "ro").chmod(0o500)
    try:
        import os

        if os.access(tmp_path / "ro", os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(CheckpointError, match="could not write"):
            save_checkpoint(tmp_path / "ro" / "ck", bundle)
        load_checkpoint(tmp_path / "ro" / "ck")
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_files_and_folders_reach_the_disk_before_the_swap(tmp_path, monkeypatch):
    """Every file is fsynced before config.json makes the folder complete, and the parent
    folder after the swap (so a power cut leaves the old or the new checkpoint, whole)."""
    import os

    synced: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def rename(src, dst) -> None:
        synced.append(f"rename {Path(src).name} -> {Path(dst).name}")
        real_rename(src, dst)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("reads file names from /proc")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    save_checkpoint(tmp_path / "ck", tiny_bundle(), state={"step": 1})
    names = [Path(s).name for s in synced]
    complete = names.index("rename config.json.part -> config.json")
    assert {"model.safetensors", "state.json", "config.json.part"} <= set(names[:complete])
    assert names[-1] == tmp_path.name  # the parent folder, after `ck.tmp-PID -> ck`
