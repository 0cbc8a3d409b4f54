"""How much device memory a miner's inner loop needs, computed from the model's shapes.

Per device: fp32 weights, fp32 gradients and AdamW's two fp32 moments (16 bytes per
parameter; with FSDP divided by the ranks, plus the two blocks being gathered), the bf16
weight copies autocast keeps while a micro-batch runs, the activations autograd saves for
one micro-batch (``activation_bytes``: every tensor the forward of ``protocol.model``
keeps for the backward, counted per token; with activation checkpointing only each
block's input plus one block recomputed at a time), the logits and loss, and a reserve
for the CUDA context and allocator slack. ``tests/miner/test_memory_plan.py`` checks the
activation count against what autograd really saves.

``choose`` resolves the ``auto`` memory settings: bf16 autocast on CUDA (fp32 elsewhere);
no activation checkpointing at the largest micro-batch that fits (fastest), else
checkpointing at the largest micro-batch that fits.

Example:
    >>> p = plan(preset("1b"), batch_size=8, seq_len=2048, precision="bf16", checkpointing=False,
    ...          micro_batch=1, device_bytes=24 * GIB)
    >>> p.fits, round(p.headroom / GIB, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

from protocol.model import ModelConfig, estimate_params

GIB = 1024**3
TARGET_GPU_BYTES = 24 * GIB  # the home GPU the product is for (RTX 3090/4090)
CUDA_RESERVE_BYTES = GIB  # CUDA context, cuBLAS/attention workspaces
SLACK = 0.05  # allocator fragmentation, as a share of everything else

Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class MemorySettings:
    """The operator's memory choices; ``auto``/0 are resolved by ``choose``."""

    precision: Literal["auto", "fp32", "bf16"] = "auto"
    checkpointing: Literal["auto", "on", "off"] = "auto"
    micro_batch: int = 0  # samples per forward/backward; 0: auto


def block_bytes_per_token(cfg: ModelConfig, precision: Precision) -> int:
    """Bytes one transformer block saves for the backward, per token.

    fp32: the block's input, each RMSNorm's normalised value and output (2 norms), the
    rotated q, k and v (k, v repeated to all heads) and the attention output (the output
    projection reads it as a view) with its log-sum-exp, the mid-block residual: 10 x
    4·dim + 4·heads; and the MLP's gate, up, activated gate and product: 4 x 4·ffn.
    bf16 autocast: the residual stream and the norms' normalised values stay fp32 (4 x
    4·dim); a norm's output is kept only as each linear's own bf16 copy of its input (3 for
    q/k/v, 2 for gate/up); q, k, v and the attention output are bf16:
    34·dim + 8·ffn + 4·heads.
    """
    h, f, heads = cfg.dim, cfg.ffn_hidden, cfg.n_heads
    if precision == "fp32":
        return 40 * h + 16 * f + 4 * heads
    return 34 * h + 8 * f + 4 * heads


def head_saved_bytes_per_token(cfg: ModelConfig, precision: Precision) -> int:
    """What the final norm, the output layer and the loss keep: the norm's input and
    normalised value, its output (fp32; in bf16 the output layer's bf16 copy of it instead)
    and the log-softmax output (fp32)."""
    h, v = cfg.dim, cfg.vocab_size
    return (12 * h + 4 * v) if precision == "fp32" else (10 * h + 4 * v)


def head_bytes_per_token(cfg: ModelConfig, precision: Precision) -> int:
    """The head's saved tensors plus the logits alive while the loss is computed (in bf16:
    the bf16 logits and their fp32 copy): the forward's peak."""
    v = cfg.vocab_size
    return head_saved_bytes_per_token(cfg, precision) + (4 * v if precision == "fp32" else 6 * v)


def activation_bytes(cfg: ModelConfig, tokens: int, precision: Precision, checkpointing: bool) -> int:
    """Saved activations of one micro-batch of ``tokens`` tokens (batch x seq_len)."""
    block = block_bytes_per_token(cfg, precision)
    layers = cfg.n_layers * 4 * cfg.dim + block if checkpointing else cfg.n_layers * block
    return tokens * (layers + head_bytes_per_token(cfg, precision))


def linear_params(cfg: ModelConfig) -> int:
    """Parameters in matmuls (autocast casts them to bf16): all but embedding and norms."""
    return estimate_params(cfg) - cfg.vocab_size * cfg.dim - (2 * cfg.n_layers + 1) * cfg.dim


def block_params(cfg: ModelConfig) -> int:
    return (linear_params(cfg) - cfg.vocab_size * cfg.dim) // cfg.n_layers + 2 * cfg.dim


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device of one configuration, and whether it fits ``device_bytes``."""

    cfg: ModelConfig
    batch_size: int
    seq_len: int
    precision: Precision
    checkpointing: bool
    micro_batch: int
    ranks: int
    shard: bool
    device_bytes: int
    weights: int
    gradients: int
    optimizer: int
    gathered: int  # FSDP: full parameters of the blocks being all-gathered
    weight_copies: int  # bf16 autocast casts of the matmul weights
    activations: int
    reserve: int

    @property
    def params(self) -> int:
        return estimate_params(self.cfg)

    @property
    def per_rank_batch(self) -> int:
        return math.ceil(self.batch_size / self.ranks)

    @property
    def accumulation_steps(self) -> int:
        return math.ceil(self.per_rank_batch / self.micro_batch)

    @property
    def subtotal(self) -> int:
        return (self.weights + self.gradients + self.optimizer + self.gathered + self.weight_copies
                + self.activations)

    @property
    def total(self) -> int:
        return int(self.subtotal * (1 + SLACK)) + self.reserve

    @property
    def headroom(self) -> int:
        return self.device_bytes - self.total

    @property
    def fits(self) -> bool:
        return self.headroom >= 0


def plan(cfg: ModelConfig, *, batch_size: int, seq_len: int, precision: Precision, checkpointing: bool,
         micro_batch: int, device_bytes: int, ranks: int = 1, shard: bool = False,
         reserve: int = CUDA_RESERVE_BYTES) -> MemoryPlan:
    """The memory of one configuration (``micro_batch`` samples per forward on each rank)."""
    if batch_size < ranks:
        raise ValueError(f"batch size {batch_size} is smaller than the {ranks} ranks sharing it")
    p = estimate_params(cfg)
    split = ranks if shard else 1
    micro = max(1, min(micro_batch, math.ceil(batch_size / ranks)))
    return MemoryPlan(
        cfg=cfg, batch_size=batch_size, seq_len=seq_len, precision=precision, checkpointing=checkpointing,
        micro_batch=micro, ranks=ranks, shard=shard, device_bytes=device_bytes,
        weights=4 * p // split, gradients=4 * p // split, optimizer=8 * p // split,
        gathered=2 * 4 * block_params(cfg) if shard and ranks > 1 else 0,
        weight_copies=2 * linear_params(cfg) if precision == "bf16" else 0,
        activations=activation_bytes(cfg, micro * seq_len, precision, checkpointing), reserve=reserve,
    )


def micro_batches(per_rank: int) -> Iterator[int]:
    """Candidate micro-batch sizes, largest first: the whole per-rank batch, halved down to 1."""
    m = per_rank
    while True:
        yield m
        if m == 1:
            return
        m = max(1, math.ceil(m / 2))


def resolve_precision(setting: str, device_type: str) -> Precision:
    if setting == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    if setting not in ("fp32", "bf16"):
        raise ValueError(f"precision {setting!r}: use auto, fp32 or bf16")
    return setting  # type: ignore[return-value]


def candidates(base: MemoryPlan, settings: MemorySettings) -> list[MemoryPlan]:
    """Every configuration ``choose`` considers, in order of preference."""
    ckpt = {"auto": [False, True], "on": [True], "off": [False]}[settings.checkpointing]
    micros = [settings.micro_batch] if settings.micro_batch > 0 else list(micro_batches(base.per_rank_batch))
    out = []
    for c in ckpt:
        for m in micros:
            out.append(plan(base.cfg, batch_size=base.batch_size, seq_len=base.seq_len, precision=base.precision,
                            checkpointing=c, micro_batch=m, device_bytes=base.device_bytes, ranks=base.ranks,
                            shard=base.shard, reserve=base.reserve))
    return out


def choose(cfg: ModelConfig, settings: MemorySettings, *, batch_size: int, seq_len: int, device_type: str,
           device_bytes: int, ranks: int = 1, shard: bool = False) -> tuple[MemoryPlan, list[MemoryPlan]]:
    """(the plan the settings resolve to, every candidate). On CPU ``auto`` means today's
    behaviour: fp32, no checkpointing, the whole batch at once (host memory is not planned).
    Off CPU: the first candidate that fits, else the smallest one (which does not fit)."""
    precision = resolve_precision(settings.precision, device_type)
    reserve = CUDA_RESERVE_BYTES if device_type == "cuda" else 0
    base = plan(cfg, batch_size=batch_size, seq_len=seq_len, precision=precision, checkpointing=False,
                micro_batch=batch_size, device_bytes=device_bytes, ranks=ranks, shard=shard, reserve=reserve)
    if device_type != "cuda":
        cpu = replace(settings, checkpointing="off" if settings.checkpointing == "auto" else settings.checkpointing)
        options = candidates(base, cpu)
        return options[0], options
    options = candidates(base, settings)
    fitting = [p for p in options if p.fits]
    return (fitting[0] if fitting else min(options, key=lambda p: p.total)), options


def device_memory(device: object) -> tuple[int, str]:
    """(bytes, description) of a CUDA device's memory; for any other device the 24 GiB home
    GPU the plan is made for."""
    import torch

    dev = torch.device(device)  # type: ignore[call-overload]
    if dev.type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(dev)
        return int(props.total_memory), f"{props.name}, {dev}"
    return TARGET_GPU_BYTES, "the 24 GiB home GPU this plan is for (no CUDA device here)"


def _gib(n: int) -> str:
    return f"{n / GIB:.2f}"


def render(chosen: MemoryPlan, options: list[MemoryPlan], device_label: str) -> str:
    """The ``swarmtrain miner --plan`` report: the chosen plan's items and the alternatives."""
    c = chosen
    mode = ("FSDP over" if c.shard else "DDP over") + f" {c.ranks} ranks" if c.ranks > 1 else "1 device"
    lines = [
        f"memory plan: preset {c.cfg.name} ({c.params / 1e6:.1f} M params, vocab {c.cfg.vocab_size}), "
        f"batch {c.batch_size} x {c.seq_len} tokens, {mode}, "
        f"{'bf16 autocast' if c.precision == 'bf16' else 'fp32'}, AdamW",
        f"device: {_gib(c.device_bytes)} GiB ({device_label})", "",
        "| per device | GiB |", "|---|---|",
        f"| weights (fp32{', sharded' if c.shard else ''}) | {_gib(c.weights)} |",
        f"| gradients (fp32) | {_gib(c.gradients)} |",
        f"| AdamW moments (2 x fp32) | {_gib(c.optimizer)} |",
    ]
    if c.gathered:
        lines.append(f"| gathered blocks (FSDP) | {_gib(c.gathered)} |")
    if c.weight_copies:
        lines.append(f"| bf16 weight copies (autocast) | {_gib(c.weight_copies)} |")
    lines += [
        f"| activations: micro-batch {c.micro_batch} x {c.seq_len}, checkpointing "
        f"{'on' if c.checkpointing else 'off'} | {_gib(c.activations)} |",
        f"| allocator slack ({SLACK:.0%}) + CUDA context | {_gib(c.total - c.subtotal)} |",
        f"| **total** | **{_gib(c.total)}** |", "",
        f"{'fits' if c.fits else 'DOES NOT FIT'}: {_gib(abs(c.headroom))} GiB "
        f"{'to spare' if c.fits else 'short'} (micro-batch {c.micro_batch}, {c.accumulation_steps} "
        f"accumulation step(s) per inner step, activation checkpointing {'on' if c.checkpointing else 'off'})",
        "", "| checkpointing | micro-batch | activations GiB | total GiB | fits |", "|---|---|---|---|---|",
    ]
    lines += [f"| {'on' if p.checkpointing else 'off'} | {p.micro_batch} | {_gib(p.activations)} | "
              f"{_gib(p.total)} | {'yes' if p.fits else 'no'} |" for p in options]
    return "\n".join(lines)
