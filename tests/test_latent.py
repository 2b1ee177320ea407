"""Latent use beyond the free-bits floor: which dimensions count, and which floor a
checkpoint was trained with."""

from __future__ import annotations

import json

import pytest

from core.config import TrainArgs
from core.latent import free_bits_of, units_above_floor


def test_only_dimensions_over_the_floor_count():
    kl = [0.05, 0.094, 0.1, 0.1001, 0.65, 2.0]  # 0.1 itself is at the floor, not over it
    assert units_above_floor(kl, 0.1) == 3
    assert units_above_floor(kl, 0.5) == 2
    assert units_above_floor(kl, 0.0) == 6


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"step": 3, "train_args": {"free_bits": 0.25}}, 0.25),
        ({"step": 3}, TrainArgs().free_bits),  # older state.json: no train_args
        (None, TrainArgs().free_bits),  # a shipped checkpoint: no state.json
    ],
)
def test_the_floor_is_the_checkpoints_own(tmp_path, state, expected):
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
    assert free_bits_of(tmp_path) == expected


def test_a_garbled_state_file_falls_back_to_the_default(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    assert free_bits_of(tmp_path) == TrainArgs().free_bits
