"""core.finetune: growing a trained model to a larger vocabulary and other conditions keeps
what it knew (same outputs where nothing was added) and adds fresh rows where it must."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from tiny import tiny_bundle

from core.finetune import FineTuneError, grow, union_tokenizer
from core.tokenizer import Tokenizer


def logits(model, bos: int, ids, props, present, prefix=None) -> np.ndarray:
    ids = mx.array(ids, dtype=mx.int32)
    valid = mx.ones(ids.shape, dtype=mx.bool_)
    eps = mx.zeros((ids.shape[0], model.args.latent_dim))
    out, *_ = model(ids, valid, mx.array(props), mx.array(present), eps, bos, prefix_props=prefix)
    return np.array(out)


def params(model) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}


@pytest.mark.parametrize("feedback", [False, True])
def test_same_vocabulary_and_properties_give_the_same_model(feedback):
    base = tiny_bundle(feedback=feedback)
    model = grow(base, base.tokenizer, base.properties)
    old, new = params(base.model), params(model)
    assert old.keys() == new.keys()
    for name in old:
        np.testing.assert_array_equal(old[name], new[name], err_msg=name)


def test_new_symbols_keep_old_ids_and_old_logits():
    base = tiny_bundle()
    tok = union_tokenizer(base.tokenizer, ["[C][C@@H1][Br]", "[Br][Si]"])
    added = tok.tokens[len(base.tokenizer) :]
    assert set(added) == {"[C@@H1]", "[Br]", "[Si]"} and added[0] == "[Br]"  # most frequent
    model = grow(base, tok, base.properties)
    ids = [base.tokenizer.encode("[C][C][O]")]
    props, present = [[0.3, -0.2]], [[1.0, 1.0]]
    before = logits(base.model, base.tokenizer.bos_id, ids, props, present)
    after = logits(model, tok.bos_id, ids, props, present)
    V = len(base.tokenizer)
    np.testing.assert_allclose(after[..., :V], before, rtol=1e-5, atol=1e-5)
    head = np.array(model.decoder.head.weight)
    np.testing.assert_allclose(head[V:], np.repeat(head[:V].mean(0, keepdims=True), 3, 0))
    # the new symbols can be read and written
    assert after.shape[-1] == len(tok)
    logits(model, tok.bos_id, [tok.encode("[C][Br][Si]", strict=True)], props, present)


def test_new_and_reordered_properties_keep_the_old_ones_rows():
    base = tiny_bundle(feedback=True)
    model = grow(base, base.tokenizer, ["qed", "tpsa", "logp"], seed=3)
    assert model.args.properties == ["qed", "tpsa", "logp"] and model.args.feedback
    old, new = params(base.model), params(model)
    for part in ("encoder", "decoder"):
        type_old, type_new = old[f"{part}.cond.type.weight"], new[f"{part}.cond.type.weight"]
        np.testing.assert_array_equal(type_new[1], type_old[1])  # tpsa
        np.testing.assert_array_equal(type_new[2], type_old[0])  # logp
        for leaf in ("layers.0.weight", "layers.2.bias"):
            np.testing.assert_array_equal(
                new[f"{part}.cond.value.2.{leaf}"], old[f"{part}.cond.value.0.{leaf}"]
            )
            assert not np.array_equal(
                new[f"{part}.cond.value.0.{leaf}"], old[f"{part}.cond.value.0.{leaf}"]
            )
    # positions: z, [BOS] and the tokens keep their rows although one condition came in
    np.testing.assert_array_equal(new["decoder.pos.weight"][3:], old["decoder.pos.weight"][2:])
    np.testing.assert_array_equal(new["encoder.pos.weight"][3:], old["encoder.pos.weight"][2:])
    np.testing.assert_array_equal(new["decoder.pos.weight"][2], old["decoder.pos.weight"][0])
    # feedback inputs (gap, target, flag per property): qed's start at zero
    w_old, w_new = (
        old["decoder.feedback.net.layers.0.weight"],
        new["decoder.feedback.net.layers.0.weight"],
    )
    for k in range(3):
        assert not w_new[:, 3 * k].any()
        np.testing.assert_array_equal(w_new[:, 3 * k + 1], w_old[:, 2 * k + 1])
        np.testing.assert_array_equal(w_new[:, 3 * k + 2], w_old[:, 2 * k])
    head_old, head_new = (
        old["property_head.net.layers.2.weight"],
        new["property_head.net.layers.2.weight"],
    )
    np.testing.assert_array_equal(head_new[2], head_old[0])


def test_dropping_a_property_keeps_the_others_rows():
    """A model grown to [logp] alone has one condition token, with the base's logp rows."""
    base = tiny_bundle()
    model = grow(base, base.tokenizer, ["logp"])
    assert params(model)["decoder.cond.null"].shape[0] == 1
    np.testing.assert_array_equal(
        params(model)["decoder.cond.null"][0], params(base.model)["decoder.cond.null"][0]
    )


def test_vocabulary_must_extend_the_base():
    base = tiny_bundle()
    other = Tokenizer.build(["[N][N]"])
    with pytest.raises(FineTuneError, match="start with the base"):
        grow(base, other, base.properties)
    with pytest.raises(FineTuneError, match="at least one"):
        grow(base, base.tokenizer, [])
