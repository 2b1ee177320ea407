"""The MolScope model in PyTorch, for the benchmark only: a faithful mirror of ``core.model``.

Same modules, same parameter names and shapes (so MLX weights load one to one), same
encoder / decoder / prefix / condition embedding / closed-loop feedback embedding / property
head, the same loss as ``core.losses.loss_fn`` (KL with free bits) with the same per-step noise
(``core.trainstep.step_noise``) and the same KV-cache decoding loop as
``core.generate.generate_step``. The optimizer is ``torch.optim.AdamW`` on the same schedule;
unlike MLX's AdamW it applies bias correction, which costs nothing measurable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.config import TrainArgs
from core.derivation import CODE_SIZES
from core.model import ModelArgs


class Sequential(nn.Module):
    """``mlx.nn.Sequential``: children under ``layers`` so parameter names match."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class KVCache:
    """Keys and values of one layer, grown by concatenation as ``core.generate.KVCache``."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def update_and_fetch(self, k: torch.Tensor, v: torch.Tensor):
        if self.keys is None:
            self.keys, self.values = k, v
        else:
            self.keys = torch.cat([self.keys, k], dim=2)  # (B, H, S, Dh)
            self.values = torch.cat([self.values, v], dim=2)
        return self.keys, self.values


class Attention(nn.Module):
    def __init__(self, dims: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(dims // n_heads)
        self.qkv = nn.Linear(dims, 3 * dims)
        self.out = nn.Linear(dims, dims)

    def forward(self, x, mask=None, causal: bool = False, cache: KVCache | None = None):
        B, T, D = x.shape
        H = self.n_heads
        qkv = self.qkv(x).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, T, Dh)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)  # (B, H, S, Dh)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale
        )
        return self.out(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class MLP(nn.Module):
    def __init__(self, dims: int, hidden: int, activation: str):
        super().__init__()
        self.up = nn.Linear(dims, hidden)
        self.down = nn.Linear(hidden, dims)
        self.approximate = None if activation == "relu" else "tanh"  # MLX gelu_approx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        h = F.relu(h) if self.approximate is None else F.gelu(h, approximate="tanh")
        return self.down(h)


class TransformerBlock(nn.Module):
    def __init__(self, dims: int, n_heads: int, hidden: int, activation: str, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=eps)
        self.attn = Attention(dims, n_heads)
        self.norm2 = nn.LayerNorm(dims, eps=eps)
        self.mlp = MLP(dims, hidden, activation)

    def forward(self, x, mask=None, causal: bool = False, cache: KVCache | None = None):
        x = x + self.attn(self.norm1(x), mask, causal, cache)
        return x + self.mlp(self.norm2(x))


class ConditionEmbedding(nn.Module):
    def __init__(self, n_props: int, dims: int, n_fourier: int):
        super().__init__()
        # a parameter, as in MLX where every array attribute of a module is trainable
        self.freqs = nn.Parameter(torch.tensor([2.0 ** (i / 2) for i in range(n_fourier)]) * 0.5)
        self.value = nn.ModuleList(
            Sequential(nn.Linear(2 * n_fourier + 1, dims), nn.ReLU(), nn.Linear(dims, dims))
            for _ in range(n_props)
        )
        self.type_embed = nn.Embedding(n_props, dims)  # MLX's ``type`` (a Module method here)
        self.null = nn.Parameter(torch.zeros(n_props, dims))

    def forward(self, values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        angles = values[..., None] * self.freqs  # (B, P, F)
        feats = torch.cat([values[..., None], torch.sin(angles), torch.cos(angles)], dim=-1)
        per_prop = torch.stack([mlp(feats[:, i]) for i, mlp in enumerate(self.value)], dim=1)
        keep = present[..., None]  # (B, P, 1)
        return keep * per_prop + (1 - keep) * self.null + self.type_embed.weight


class FeedbackEmbedding(nn.Module):
    """``core.model.FeedbackEmbedding``: per property [gap·present, target·present, present]
    through Linear(3P, d) -> ReLU -> Linear(d, d), added to the token embeddings."""

    def __init__(self, n_props: int, dims: int):
        super().__init__()
        self.net = Sequential(nn.Linear(3 * n_props, dims), nn.ReLU(), nn.Linear(dims, dims))

    def forward(self, props, present, prefix_props):
        """props, present: (B, P); prefix_props: (B, T, P) normalised -> (B, T, d)."""
        flags = present[:, None].expand_as(prefix_props)  # (B, T, P)
        target = (props * present)[:, None].expand_as(prefix_props)
        gap = (props[:, None] - prefix_props) * flags
        return self.net(torch.cat([gap, target, flags], dim=-1))  # (B, T, d)


class DerivationEmbedding(nn.Module):
    """``core.model.DerivationEmbedding``: one table per derivation code, summed."""

    def __init__(self, dims: int):
        super().__init__()
        self.tables = nn.ParameterList(nn.Parameter(torch.zeros(size, dims)) for size in CODE_SIZES)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T, K) -> (B, T, d)."""
        ids = codes.long()
        return sum(table[ids[..., k]] for k, table in enumerate(self.tables))


class Encoder(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        d = args.enc_d_model
        self.embed = nn.Embedding(args.vocab_size, d)
        self.pos = nn.Embedding(args.max_len + len(args.properties), d)
        self.cond = ConditionEmbedding(len(args.properties), d, args.n_fourier)
        self.blocks = nn.ModuleList(
            TransformerBlock(d, args.enc_heads, args.enc_d_ff, args.activation, args.norm_eps)
            for _ in range(args.enc_layers)
        )
        self.norm = nn.LayerNorm(d, eps=args.norm_eps)
        self.to_latent = nn.Linear(d, 2 * args.latent_dim)

    def forward(self, tokens, valid, props, present):
        P = props.shape[1]
        x = torch.cat([self.cond(props, present), self.embed(tokens)], dim=1)  # (B, P+T, d)
        x = x + self.pos.weight[: x.shape[1]]
        key_valid = torch.cat([valid.new_ones(valid.shape[0], P), valid], dim=1)
        mask = key_valid[:, None, None, :]  # (B, 1, 1, P+T): True where a key may be seen
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)[:, P:]  # (B, T, d)
        w_tok = valid[..., None].to(x.dtype)
        pooled = (x * w_tok).sum(dim=1) / w_tok.sum(dim=1).clamp(min=1.0)  # (B, d)
        mu, logvar = self.to_latent(pooled).chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 10.0)


class Decoder(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        d = args.d_model
        self.embed = nn.Embedding(args.vocab_size, d)
        self.pos = nn.Embedding(args.max_len + args.n_prefix + 1, d)
        self.cond = ConditionEmbedding(len(args.properties), d, args.n_fourier)
        self.from_latent = nn.Linear(args.latent_dim, d)
        self.feedback = FeedbackEmbedding(len(args.properties), d) if args.feedback else None
        self.derivation = DerivationEmbedding(d) if args.derivation else None
        self.blocks = nn.ModuleList(
            TransformerBlock(d, args.n_heads, args.d_ff, args.activation, args.norm_eps)
            for _ in range(args.n_layers)
        )
        self.norm = nn.LayerNorm(d, eps=args.norm_eps)
        self.head = nn.Linear(d, args.vocab_size, bias=False)

    def prefix(self, z, props, present):
        return torch.cat([self.cond(props, present), self.from_latent(z)[:, None]], dim=1)

    def embed_tokens(self, ids, props, present, prefix_props=None):
        """Token embeddings (B, T, d), plus what each position reads of the targets."""
        x = self.embed(ids)
        if self.feedback is not None:
            n_props = props.shape[-1]
            x = x + self.feedback(props, present, prefix_props[..., :n_props])
            if self.derivation is not None:
                x = x + self.derivation(prefix_props[..., n_props:])
        return x

    def forward(self, x, offset: int = 0, cache: list[KVCache] | None = None):
        T = x.shape[1]
        x = x + self.pos.weight[offset : offset + T]
        causal = T > 1  # with a cache only the first call (offset 0) has T > 1
        for i, block in enumerate(self.blocks):
            x = block(x, None, causal, None if cache is None else cache[i])
        return self.head(self.norm(x))


class PropertyHead(nn.Module):
    def __init__(self, latent_dim: int, n_props: int):
        super().__init__()
        self.net = Sequential(nn.Linear(latent_dim, 64), nn.ReLU(), nn.Linear(64, n_props))

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return self.net(mu)


class Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.encoder = Encoder(args)
        self.decoder = Decoder(args)
        self.property_head = PropertyHead(args.latent_dim, len(args.properties))

    def decoder_inputs(self, z, props, present, tokens, bos_id: int, prefix_props=None):
        bos = tokens.new_full((tokens.shape[0], 1), bos_id)
        ids = torch.cat([bos, tokens], dim=1)
        tok = self.decoder.embed_tokens(ids, props, present, prefix_props)
        return torch.cat([self.decoder.prefix(z, props, present), tok], dim=1)

    def forward(self, tokens, valid, props, present, eps, bos_id: int, prefix_props=None):
        """Teacher-forced logits (B, T, V), mu and logvar, as ``core.model.Model``;
        ``prefix_props`` (B, T, P) for a closed-loop model."""
        mu, logvar = self.encoder(tokens, valid, props, present)
        z = mu + torch.exp(0.5 * logvar) * eps
        x = self.decoder_inputs(z, props, present, tokens[:, :-1], bos_id, prefix_props)
        return self.decoder(x)[:, self.args.n_prefix :], mu, logvar


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_mlx_weights(model: Model, mlx_model) -> None:
    """Copy every parameter of a ``core.model.Model`` into ``model`` (same names and shapes)."""
    from mlx.utils import tree_flatten

    weights = {
        k.replace(".cond.type.", ".cond.type_embed."): torch.from_numpy(np.array(v))
        for k, v in tree_flatten(mlx_model.parameters())
    }
    model.load_state_dict(weights, strict=True)


def loss_fn(
    model: Model, ids, valid, props, targets, present, prefix, eps, beta: float,
    targs: TrainArgs, bos,
):  # fmt: skip
    """``core.losses.loss_fn``: CE per token + beta * KL with free bits + property MSE; the
    model is conditioned on ``targets``, the property head learns ``props``."""
    logits, mu, logvar = model(ids, valid, targets, present, eps, bos, prefix_props=prefix)
    mask = valid.to(torch.float32)
    n_tokens = mask.sum()
    ce_tok = F.cross_entropy(logits.flatten(0, 1), ids.flatten(), reduction="none")
    ce = (ce_tok.view_as(mask) * mask).sum() / n_tokens
    kl_dim = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).mean(dim=0)  # (Z,)
    kl_cost = kl_dim.clamp(min=targs.free_bits).sum()
    tokens_per_mol = n_tokens / ids.shape[0]
    prop_mse = ((model.property_head(mu.detach()) - props) ** 2).mean()
    loss = ce + beta * kl_cost / tokens_per_mol + targs.prop_weight * prop_mse
    return loss, (ce, kl_dim.sum(), prop_mse)


def learning_rate(step: int, targs: TrainArgs) -> float:
    """``core.trainstep.make_optimizer``'s schedule: linear warmup, then cosine decay."""
    warmup = max(targs.warmup, 1)
    if step < warmup:
        return targs.lr * (0.01 + 0.99 * step / warmup)
    decay = max(targs.total_steps - targs.warmup, 1)
    t = min(step - warmup, decay) / decay
    low = targs.lr * targs.min_lr_ratio
    return low + 0.5 * (targs.lr - low) * (1 + math.cos(math.pi * t))


def step_noise(B: int, P: int, Z: int, targs: TrainArgs):
    """``core.trainstep.step_noise``: target noise (B, P) in σ units, presence flags (B, P)
    (each condition dropped on its own, all of a row with ``uncond_drop``), the VAE's noise."""
    keep = torch.rand(B, P) >= targs.cond_drop
    if targs.uncond_drop > 0:
        keep = keep & (torch.rand(B, 1) >= targs.uncond_drop)
    noise = targs.target_noise * torch.randn(B, P)
    return noise, keep.to(torch.float32), torch.randn(B, Z)


def make_train_step(model: Model, targs: TrainArgs, bos: int):
    """A function (ids, valid, props, prefix, beta) -> loss doing one full optimizer step,
    like ``core.trainstep.make_train_step`` (target noise, condition dropout,
    reparameterisation, clipping)."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=targs.lr, weight_decay=targs.weight_decay, eps=1e-8, foreach=True
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate(step, targs) / targs.lr
    )
    params = [p for p in model.parameters() if p.requires_grad]

    def step(ids, valid, props, prefix, beta: float) -> torch.Tensor:
        B, P = props.shape
        noise, present, eps = step_noise(B, P, model.args.latent_dim, targs)
        loss, _ = loss_fn(
            model, ids, valid, props, props + noise, present, prefix, eps, beta, targs, bos
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, targs.clip, foreach=True)
        optimizer.step()
        schedule.step()
        return loss.detach()

    return step


@torch.inference_mode()
def generate_tokens(
    model: Model,
    n: int,
    *,
    bos: int,
    eos: int,
    pad: int,
    banned: list[int],
    temperature: float = 1.0,
    max_tokens: int | None = None,
    allow_eos: bool = True,
    seed: int = 0,
    z: torch.Tensor | None = None,
    feedback: Callable | None = None,
) -> torch.Tensor:
    """Decode ``n`` unconditioned molecules with a KV cache, as ``core.generate.generate_step``
    does for ``generate``: sample every sequence each step (greedy at temperature 0), stop
    when all are done. ``allow_eos=False`` never ends a sequence (fixed-length timing); ``z``
    (n, latent_dim) defaults to a draw from the prior. Returns the tokens (n, S).

    ``feedback`` (a closed-loop model, ``prefix_reader``): (tokens, done, redraw) of a step ->
    (tokens, done, what the next positions read (n, P)), the closed loop of ``generate_step``
    (``core.closed_loop``: properties with RDKit, the ring limit, the finishing check).
    With every condition free the model multiplies the reads by presence 0, but the work is
    done all the same, in both frameworks."""
    args = model.args
    gen = torch.Generator().manual_seed(seed)
    if z is None:
        z = torch.randn(n, args.latent_dim, generator=gen)
    props = torch.zeros(n, len(args.properties))
    # what [BOS] reads: zeros, the empty molecule's derivation codes too (its properties are
    # multiplied by presence 0); then what ``feedback`` returns
    width = len(args.properties) + (len(CODE_SIZES) if args.derivation else 0)
    reads = torch.zeros(n, 1, width)
    cache = [KVCache() for _ in range(args.n_layers)]
    x = model.decoder_inputs(z, props, props, torch.zeros(n, 0, dtype=torch.long), bos, reads)
    logits = model.decoder(x, 0, cache)[:, -1]
    offset = x.shape[1]
    penalty = torch.zeros(args.vocab_size)
    penalty[banned + ([] if allow_eos else [eos])] = -math.inf
    done = torch.zeros(n, dtype=torch.bool)
    out = []
    for _ in range(args.max_len if max_tokens is None else max_tokens):
        logits = logits + penalty
        if temperature == 0:
            token = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=gen)[:, 0]
        token = torch.where(done, pad, token)
        done |= token == eos
        if feedback is not None:
            redraw = _redrawer(logits, temperature, gen)
            tokens, ended, read = feedback(token.numpy(), done.numpy(), redraw)
            token, done = torch.from_numpy(tokens).to(token.dtype), torch.from_numpy(ended)
            reads = torch.from_numpy(read)[:, None]
        out.append(token)
        if bool(done.all()):
            break
        x = model.decoder.embed_tokens(token[:, None], props, props, reads)  # (n, 1, d)
        logits = model.decoder(x, offset, cache)[:, -1]
        offset += 1
    return torch.stack(out, dim=1)


def _redrawer(logits: torch.Tensor, temperature: float, gen: torch.Generator) -> Callable:
    """(row, refused token ids) -> a token for that row from ``logits`` without the refused
    ones, drawn as the step drew (greedy at temperature 0)."""

    def redraw(row: int, refused: list[int]) -> int:
        row_logits = logits[row].clone()
        row_logits[refused] = -math.inf
        if temperature == 0:
            return int(row_logits.argmax())
        probs = torch.softmax(row_logits / temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=gen)[0])

    return redraw


def prefix_reader(bundle, n: int) -> Callable:
    """The closed loop of ``n`` sequences from the empty molecule, as ``core.generate`` runs
    it for a closed-loop model (``core.closed_loop.ClosedLoop``): (tokens, done, redraw) of a
    step -> (tokens, done, what the next positions read (n, P), ``Bundle.position_reads``)."""
    from core.closed_loop import ClosedLoop

    loop, position = ClosedLoop(bundle, n, "", live=True), [0]

    def read(tokens: np.ndarray, done: np.ndarray, redraw: Callable) -> tuple:
        room = bundle.args.max_len - position[0] - 1  # symbols that could still follow
        position[0] += 1
        tokens, done, latest = loop.push(tokens, done, room, redraw)
        return tokens, done, np.array(latest)[:, 0]

    return read
