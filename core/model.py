"""Full definition of the MolScope model, all of it in this single file.

A property-conditioned Transformer VAE over SELFIES tokens:

- ``Encoder``: bidirectional Transformer over [conditions..., tokens...] (padding masked),
  mean-pooled over the tokens -> ``mu``, ``logvar`` of the latent ``z``.
- ``Decoder``: GPT-style pre-norm causal Transformer. Its input is a prefix of one token per
  property condition and one token from ``z``, then [BOS] and the SELFIES tokens. The causal
  mask covers the prefix too, so every position sees the conditions. With ``feedback`` on,
  every [BOS]/token position also reads, per property, the target and the gap (target −
  property of the molecule decoded so far) / σ (``core.feedback``): closed-loop steering.
- ``PropertyHead``: predicts the properties from ``mu`` (a probe of what the latent holds).

Attention has a fast path (``mx.fast.scaled_dot_product_attention``) and an inspection path
that returns the weights; both add the mask to the scores before the softmax. The decoder has
one forward path: with no cache (teacher forcing), or with one cache per layer from
``core.cache`` (a growing one, or the fixed-size one that the compiled decoding step uses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import mlx.core as mx
import mlx.nn as nn

from core.cache import causal_mask
from core.derivation import CODE_SIZES


@dataclass
class ModelArgs:
    vocab_size: int = 0  # SELFIES symbols + 4 specials; set from the tokenizer
    max_len: int = 72  # longest token sequence (SELFIES symbols + [EOS]) the model reads
    d_model: int = 256  # decoder width
    n_heads: int = 4  # decoder attention heads (head size d_model // n_heads)
    n_layers: int = 4  # decoder blocks
    d_ff: int = 1024  # decoder MLP hidden size
    enc_d_model: int = 128  # encoder width (the encoder only has to summarise)
    enc_heads: int = 4  # encoder attention heads
    enc_layers: int = 2  # encoder blocks
    enc_d_ff: int = 512  # encoder MLP hidden size
    latent_dim: int = 16  # size of z
    properties: list[str] = field(default_factory=lambda: ["logp", "tpsa"])  # condition order
    n_fourier: int = 16  # Fourier features of each normalised property value
    activation: str = "relu"  # "relu" (fast on CPU) or "gelu"
    norm_eps: float = 1e-5  # LayerNorm epsilon
    feedback: bool = False  # token positions read (target, gap to target) per property
    derivation: bool = False  # with feedback: positions also read the SELFIES derivation state

    @classmethod
    def from_dict(cls, params: dict) -> ModelArgs:
        """Build from a dict, ignoring unknown keys (so older checkpoints still load)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})

    @property
    def n_prefix(self) -> int:
        """Decoder positions before [BOS]: one per property, one for z."""
        return len(self.properties) + 1


def padding_mask(valid: mx.array) -> mx.array:
    """Additive key mask (B, 1, 1, T) from a boolean (B, T) array of real positions."""
    return mx.where(valid, 0.0, -mx.inf)[:, None, None, :]


class Attention(nn.Module):
    """Multi-head self-attention with one fused QKV projection."""

    def __init__(self, dims: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(dims // n_heads)
        self.qkv = nn.Linear(dims, 3 * dims)
        self.out = nn.Linear(dims, dims)

    def __call__(self, x: mx.array, mask=None, cache=None, return_weights: bool = False):
        """x: (B, T, D); mask: additive, broadcast to (B, H, T, S); cache: one layer's
        (``core.cache``) -> output (B, T, D) and, on request, the weights (B, H, T, S)."""
        B, T, D = x.shape
        H = self.n_heads
        qkv = self.qkv(x).reshape(B, T, 3, H, D // H).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, Dh)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)  # (B, H, S, Dh), S = what the cache holds
        if return_weights:
            scores = (q * self.scale) @ k.transpose(0, 1, 3, 2)  # (B, H, T, S)
            if mask is not None:
                scores = scores + mask  # before the softmax: masked keys get exactly 0
            weights = mx.softmax(scores.astype(mx.float32), axis=-1).astype(q.dtype)
            y = weights @ v  # (B, H, T, Dh)
        else:
            weights = None
            y = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, D)  # (B, T, D)
        return self.out(y), weights


class MLP(nn.Module):
    def __init__(self, dims: int, hidden: int, activation: str):
        super().__init__()
        self.up = nn.Linear(dims, hidden)
        self.down = nn.Linear(hidden, dims)
        self.act = nn.relu if activation == "relu" else nn.gelu_approx

    def __call__(self, x: mx.array) -> mx.array:
        return self.down(self.act(self.up(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dims: int, n_heads: int, hidden: int, activation: str, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=eps)
        self.attn = Attention(dims, n_heads)
        self.norm2 = nn.LayerNorm(dims, eps=eps)
        self.mlp = MLP(dims, hidden, activation)

    def __call__(self, x, mask=None, cache=None, return_weights=False):
        h, weights = self.attn(self.norm1(x), mask, cache, return_weights)
        x = x + h
        return x + self.mlp(self.norm2(x)), weights


class ConditionEmbedding(nn.Module):
    """One token per property: an MLP of Fourier features of the normalised value plus a type
    embedding; a dropped (unconditioned) property uses a learned null vector instead."""

    def __init__(self, n_props: int, dims: int, n_fourier: int):
        super().__init__()
        self.freqs = mx.array([2.0 ** (i / 2) for i in range(n_fourier)]) * 0.5
        self.value = [
            nn.Sequential(nn.Linear(2 * n_fourier + 1, dims), nn.ReLU(), nn.Linear(dims, dims))
            for _ in range(n_props)
        ]
        self.type = nn.Embedding(n_props, dims)
        self.null = mx.zeros((n_props, dims))
        self.freeze(keys=["freqs"], recurse=False)  # fixed frequencies, saved but not trained

    def __call__(self, values: mx.array, present: mx.array) -> mx.array:
        """values, present: (B, P) normalised values and 0/1 flags -> (B, P, D)."""
        angles = values[..., None] * self.freqs  # (B, P, F)
        feats = mx.concatenate([values[..., None], mx.sin(angles), mx.cos(angles)], axis=-1)
        per_prop = mx.stack([mlp(feats[:, i]) for i, mlp in enumerate(self.value)], axis=1)
        keep = present[..., None].astype(per_prop.dtype)  # (B, P, 1)
        tokens = keep * per_prop + (1 - keep) * self.null
        return tokens + self.type.weight


class FeedbackEmbedding(nn.Module):
    """What each [BOS]/token position reads of the conditions: per property the normalised
    target, the gap (target − property of the prefix's molecule) / σ and the presence flag,
    all zero for a dropped property, through a small MLP added to the token embedding."""

    def __init__(self, n_props: int, dims: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * n_props, dims), nn.ReLU(), nn.Linear(dims, dims))

    def __call__(self, props: mx.array, present: mx.array, prefix_props: mx.array) -> mx.array:
        """props, present: (B, P); prefix_props: (B, T, P) normalised -> (B, T, d)."""
        T = prefix_props.shape[1]
        target = mx.broadcast_to((props * present)[:, None], prefix_props.shape)  # (B, T, P)
        flags = mx.broadcast_to(present[:, None], prefix_props.shape)
        gap = (props[:, None] - prefix_props) * flags
        feats = mx.concatenate([gap, target, flags], axis=-1)  # (B, T, 3P)
        out = self.net(feats.reshape(-1, feats.shape[-1]))  # (B*T, d)
        return out.reshape(props.shape[0], T, -1)  # (B, T, d)


class DerivationEmbedding(nn.Module):
    """What each [BOS]/token position reads of the SELFIES derivation after its symbol
    (``core.derivation``: bonds left, index symbols pending, branch depth, symbols left in
    the branch), one embedding per code, summed and added to the token embedding. The tables
    start at zero, so a model fine-tuned to read them starts as it was."""

    def __init__(self, dims: int):
        super().__init__()
        self.tables = [mx.zeros((size, dims)) for size in CODE_SIZES]

    def __call__(self, codes: mx.array) -> mx.array:
        """codes (B, T, K) (small integers, any dtype) -> (B, T, d)."""
        ids = codes.astype(mx.int32)
        out = self.tables[0][ids[..., 0]]
        for k in range(1, len(self.tables)):
            out = out + self.tables[k][ids[..., k]]
        return out


class Encoder(nn.Module):
    """Bidirectional Transformer: (conditions, tokens) -> mu, logvar of z."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        d = args.enc_d_model
        self.embed = nn.Embedding(args.vocab_size, d)
        self.pos = nn.Embedding(args.max_len + len(args.properties), d)
        self.cond = ConditionEmbedding(len(args.properties), d, args.n_fourier)
        self.blocks = [
            TransformerBlock(d, args.enc_heads, args.enc_d_ff, args.activation, args.norm_eps)
            for _ in range(args.enc_layers)
        ]
        self.norm = nn.LayerNorm(d, eps=args.norm_eps)
        self.to_latent = nn.Linear(d, 2 * args.latent_dim)

    def __call__(self, tokens, valid, props, present, return_weights=False):
        """tokens, valid: (B, T); props, present: (B, P) -> mu, logvar (B, Z), weights."""
        P = props.shape[1]
        x = mx.concatenate([self.cond(props, present), self.embed(tokens)], axis=1)  # (B, P+T, d)
        x = x + self.pos.weight[: x.shape[1]]
        key_valid = mx.concatenate([mx.ones((valid.shape[0], P), dtype=mx.bool_), valid], axis=1)
        mask = padding_mask(key_valid).astype(x.dtype)
        weights = []
        for block in self.blocks:
            x, w = block(x, mask, None, return_weights)
            weights.append(w)
        x = self.norm(x)[:, P:]  # (B, T, d)
        w_tok = valid[..., None].astype(x.dtype)
        pooled = (x * w_tok).sum(axis=1) / mx.maximum(w_tok.sum(axis=1), 1.0)  # (B, d)
        mu, logvar = mx.split(self.to_latent(pooled), 2, axis=-1)
        return mu, mx.clip(logvar, -10.0, 10.0), weights


class Decoder(nn.Module):
    """Causal Transformer over [conditions..., z, BOS, tokens...] -> next-token logits."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        d = args.d_model
        self.embed = nn.Embedding(args.vocab_size, d)
        self.pos = nn.Embedding(args.max_len + args.n_prefix + 1, d)
        self.cond = ConditionEmbedding(len(args.properties), d, args.n_fourier)
        self.from_latent = nn.Linear(args.latent_dim, d)
        if args.feedback:
            self.feedback = FeedbackEmbedding(len(args.properties), d)
        if args.derivation:
            self.derivation = DerivationEmbedding(d)
        self.blocks = [
            TransformerBlock(d, args.n_heads, args.d_ff, args.activation, args.norm_eps)
            for _ in range(args.n_layers)
        ]
        self.norm = nn.LayerNorm(d, eps=args.norm_eps)
        self.head = nn.Linear(d, args.vocab_size, bias=False)

    def prefix(self, z: mx.array, props: mx.array, present: mx.array) -> mx.array:
        """Embeddings (B, P+1, d) of the condition tokens and the z token."""
        return mx.concatenate([self.cond(props, present), self.from_latent(z)[:, None]], axis=1)

    def embed_tokens(self, ids, props, present, prefix_props=None) -> mx.array:
        """Embeddings (B, T, d) of token ids (B, T); with feedback, plus what each position
        reads of the targets, given ``prefix_props`` (B, T, P): the normalised properties of
        the molecule decoded before the token that position predicts (then, for a decoder
        that reads the derivation, its 4 codes: (B, T, P + 4), ``Bundle.position_reads``)."""
        x = self.embed(ids)
        if "feedback" in self:
            if prefix_props is None:
                raise ValueError("this decoder reads feedback: pass prefix_props (B, T, P)")
            n_props = props.shape[-1]
            x = x + self.feedback(props, present, prefix_props[..., :n_props])
            if "derivation" in self:
                x = x + self.derivation(prefix_props[..., n_props:])
        return x

    def __call__(self, x: mx.array, cache: list | None = None, return_weights=False):
        """x: (B, T, d) input embeddings -> logits (B, T, V) and, on request, each layer's
        attention weights. Without ``cache`` the positions are 0..T-1; with one (a cache per
        layer, ``core.cache``) they follow what it holds, and it receives their keys/values."""
        T = x.shape[1]
        if cache is None:
            offset = 0
            # an explicit mask array: on CPU, mask="causal" measured ~1.6x slower (forward)
            mask = None if T == 1 else causal_mask(T, dtype=x.dtype)
        else:
            offset, mask = cache[0].offset, cache[0].make_mask(T, x.dtype)
        x = x + mx.take(self.pos.weight, mx.arange(T) + offset, axis=0)  # (T, d) broadcast
        weights = []
        for i, block in enumerate(self.blocks):
            x, w = block(x, mask, None if cache is None else cache[i], return_weights)
            weights.append(w)
        return self.head(self.norm(x)), weights


class PropertyHead(nn.Module):
    def __init__(self, latent_dim: int, n_props: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, 64), nn.ReLU(), nn.Linear(64, n_props))

    def __call__(self, mu: mx.array) -> mx.array:
        return self.net(mu)


class Model(nn.Module):
    """The conditional VAE: ``encoder``, ``decoder`` and the ``property_head`` on ``mu``."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.encoder = Encoder(args)
        self.decoder = Decoder(args)
        self.property_head = PropertyHead(args.latent_dim, len(args.properties))

    def decoder_inputs(self, z, props, present, tokens, bos_id: int, prefix_props=None) -> mx.array:
        """Embeddings (B, P+1+1+T, d) of [conditions, z, BOS, tokens]; ``prefix_props``
        (B, 1+T, P): the normalised properties of the molecule before each of BOS, tokens
        (needed with feedback; ``core.feedback``)."""
        B = tokens.shape[0]
        bos = mx.full((B, 1), bos_id, dtype=tokens.dtype)
        ids = mx.concatenate([bos, tokens], axis=1)
        tok = self.decoder.embed_tokens(ids, props, present, prefix_props)
        return mx.concatenate([self.decoder.prefix(z, props, present), tok], axis=1)

    def __call__(
        self, tokens, valid, props, present, eps, bos_id: int, return_weights=False,
        prefix_props=None,
    ):  # fmt: skip
        """Teacher-forced pass. tokens, valid: (B, T); props, present: (B, P); eps: (B, Z);
        ``prefix_props`` (B, T, P) with feedback: the normalised properties of the molecule
        of tokens[:, :t] at position t.

        Returns logits (B, T, V) predicting ``tokens`` (position t sees tokens < t), mu, logvar,
        the property head's predictions (B, P) and, on request, the decoder's attention.
        """
        mu, logvar, _ = self.encoder(tokens, valid, props, present)
        z = mu + mx.exp(0.5 * logvar) * eps
        x = self.decoder_inputs(z, props, present, tokens[:, :-1], bos_id, prefix_props)
        logits, weights = self.decoder(x, return_weights=return_weights)
        logits = logits[:, self.args.n_prefix :]  # drop the prefix positions: (B, T, V)
        return logits, mu, logvar, self.property_head(mu), weights


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters."""
    from mlx.utils import tree_flatten

    return sum(v.size for _, v in tree_flatten(model.parameters()))
