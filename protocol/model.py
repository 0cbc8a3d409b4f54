"""The shared model: a LLaMA-style decoder, its presets, θ_0 and its hash.

Every node builds the same initial weights from the subnet seed (``build_model``) and
checks after each outer step that it holds the same weights as everyone else
(``model_hash``). Embeddings are *untied* (separate ``tok_emb`` and ``lm_head``): each
is then an ordinary 2-D tensor for the codec, and no parameter appears under two names.

Example:
    >>> cfg = preset("tiny")
    >>> model = build_model(cfg, seed=0)
    >>> batch = torch.randint(0, cfg.vocab_size, (2, 17))
    >>> loss = lm_loss(model, batch)
    >>> len(model_hash(model))
    64
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

if TYPE_CHECKING:  # a type only: protocol.model needs nothing else from the subnet module
    from protocol.subnet import SubnetConfig

# protocol.data.VOCAB_SIZE: 256 bytes + BOS/EOS/PAD, padded to a multiple of 8. A literal
# here keeps model.py free of a dependency on the data module.
DEFAULT_VOCAB_SIZE = 264

HASH_FORMAT = b"swarmtrain-model-hash/1"


class ModelConfig(BaseModel):
    """Shape of the decoder. Validated: heads divide dim, kv heads divide heads.

    Example:
        >>> ModelConfig(name="x", dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
        ...             ffn_hidden=176, max_seq_len=128).head_dim
        16
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    vocab_size: int = Field(DEFAULT_VOCAB_SIZE, ge=2, le=1_000_000)
    dim: int = Field(ge=2, le=65536)
    n_layers: int = Field(ge=1, le=1024)
    n_heads: int = Field(ge=1, le=1024)
    n_kv_heads: int = Field(ge=1, le=1024)
    ffn_hidden: int = Field(ge=1, le=1_000_000)
    max_seq_len: int = Field(ge=1, le=1_048_576)
    rope_theta: float = Field(10000.0, gt=0)
    norm_eps: float = Field(1e-5, gt=0, lt=1)

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        if self.dim % self.n_heads != 0:
            raise ValueError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2 != 0:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        return self

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


PRESETS: dict[str, ModelConfig] = {
    # ~126k params: trains in seconds on CPU in tests.
    "tiny": ModelConfig(name="tiny", dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                        ffn_hidden=176, max_seq_len=128),
    # ~12.8M params: the CPU demo size.
    "small": ModelConfig(name="small", dim=384, n_layers=8, n_heads=6, n_kv_heads=2,
                         ffn_hidden=1024, max_seq_len=256),
    # ~151M params (byte vocabulary, so nearly all of it is in the blocks).
    "150m": ModelConfig(name="150m", dim=1024, n_layers=12, n_heads=16, n_kv_heads=8,
                        ffn_hidden=3072, max_seq_len=1024),
    # ~0.97B params: TinyLlama's block shape (2048 wide, 22 layers, 32 heads, 4 kv heads).
    "1b": ModelConfig(name="1b", dim=2048, n_layers=22, n_heads=32, n_kv_heads=4,
                      ffn_hidden=5632, max_seq_len=2048),
}


def preset(name: str, vocab_size: int | None = None) -> ModelConfig:
    """The preset config called ``name`` (with ``vocab_size`` if given); ``ValueError`` listing
    the valid names otherwise."""
    try:
        cfg = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)}") from None
    return cfg if vocab_size is None else ModelConfig.model_validate({**cfg.model_dump(), "vocab_size": vocab_size})


def subnet_model_config(cfg: SubnetConfig) -> ModelConfig:
    """The model a subnet trains: its preset's shape with the vocabulary its tokenizer sets.

    Example:
        >>> from protocol.subnet import SubnetConfig
        >>> subnet_model_config(SubnetConfig(preset="tiny", vocab_size=4096)).vocab_size
        4096
    """
    return preset(cfg.preset, cfg.vocab_size)


def initial_seed(cfg: SubnetConfig) -> int:
    """θ_0's init seed: the first 8 bytes of sha256(subnet seed), big endian."""
    return int.from_bytes(hashlib.sha256(cfg.seed_bytes).digest()[:8], "big")


def initial_model(cfg: SubnetConfig) -> Transformer:
    """θ_0 of a subnet: every node builds these exact weights from the subnet config."""
    return build_model(subnet_model_config(cfg), seed=initial_seed(cfg))


# ---------------------------------------------------------------------------- modules


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Normalise in fp32 whatever the activation dtype, as LLaMA does.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def rope_tables(seq_len: int, head_dim: int, theta: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos, sin tables (T, head_dim) for rotate-half rotary embeddings, in fp32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)  # (T, hd)
    return emb.cos(), emb.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: (B, H, T, hd); rotate pairs (i, i + hd/2) by position-dependent angles."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.kv_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.kv_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.n_kv_heads != self.n_heads:  # GQA: each kv head serves a group of query heads
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hd)
        out: Tensor = self.wo(y.transpose(1, 2).reshape(b, t, -1))
        return out


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)  # gate
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)  # up
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)  # down

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.w2(F.silu(self.w1(x)) * self.w3(x))
        return out


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        out: Tensor = x + self.mlp(self.mlp_norm(x))
        return out


class Transformer(nn.Module):
    """Pre-norm decoder: embed -> n_layers x (attention, SwiGLU) -> RMSNorm -> lm_head.

    Example:
        >>> m = build_model(preset("tiny"))
        >>> m(torch.zeros(1, 8, dtype=torch.long)).shape
        torch.Size([1, 8, 264])
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)

    def forward(self, idx: Tensor) -> Tensor:
        """idx (B, T) int64 -> logits (B, T, vocab_size)."""
        t = idx.shape[1]
        if t > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {t} exceeds max_seq_len={self.cfg.max_seq_len}")
        # Recomputed per call (cheap next to the matmuls); no buffer, so the state dict
        # holds parameters only and meta-device construction needs no fix-up.
        cos, sin = rope_tables(t, self.cfg.head_dim, self.cfg.rope_theta, idx.device)
        x = self.tok_emb(idx)
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits: Tensor = self.lm_head(self.norm(x))  # (B, T, vocab)
        return logits


# ---------------------------------------------------------------------------- building


def _init_weights(model: Transformer, seed: int) -> None:
    """Fill every parameter from a local generator, in named_parameters order."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    # GPT-2 / LLaMA practice: residual output projections scaled down by depth.
    out_std = 0.02 / math.sqrt(2 * model.cfg.n_layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(("attn.wo.weight", "mlp.w2.weight")):
                p.normal_(0.0, out_std, generator=gen)
            else:
                p.normal_(0.0, 0.02, generator=gen)


def build_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """The model for ``cfg`` with weights determined by ``seed`` alone (CPU, fp32).

    Built on the meta device first so no default initialiser touches the global RNG.
    """
    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device="cpu")
    _init_weights(model, seed)
    return model


def sample_losses(model: nn.Module, batch: Tensor) -> Tensor:
    """Per-sample mean next-token cross-entropy, (B,) fp32; batch (B, T+1) as ``lm_loss``."""
    if batch.dim() != 2 or batch.shape[1] < 2:
        raise ValueError(f"batch must have shape (B, T+1) with T >= 1, got {tuple(batch.shape)}")
    logits = model(batch[:, :-1])  # (B, T, V)
    per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1),
                                reduction="none")
    return per_token.view(batch.shape[0], -1).mean(dim=1)


def lm_loss(model: nn.Module, batch: Tensor) -> Tensor:
    """Mean next-token cross-entropy; batch (B, T+1): inputs batch[:, :-1], targets batch[:, 1:]."""
    if batch.dim() != 2 or batch.shape[1] < 2:
        raise ValueError(f"batch must have shape (B, T+1) with T >= 1, got {tuple(batch.shape)}")
    logits = model(batch[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))


def param_spec(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape, in named_parameters order."""
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def estimate_params(cfg: ModelConfig) -> int:
    """Parameter count computed from the config alone (no allocation)."""
    attn = 2 * cfg.dim * cfg.dim + 2 * cfg.dim * cfg.kv_dim
    mlp = 3 * cfg.dim * cfg.ffn_hidden
    per_layer = attn + mlp + 2 * cfg.dim
    return 2 * cfg.vocab_size * cfg.dim + cfg.n_layers * per_layer + cfg.dim


def expected_spec(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """``param_spec`` of the model ``cfg`` describes, without allocating its weights."""
    with torch.device("meta"):
        return param_spec(Transformer(cfg))


# ---------------------------------------------------------------------------- hashing


def _tensors_of(model_or_state: nn.Module | Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    if isinstance(model_or_state, nn.Module):
        return dict(model_or_state.named_parameters())
    return model_or_state


def model_hash(model_or_state: nn.Module | Mapping[str, Tensor]) -> str:
    """sha256 hex over (name, shape, dtype, little-endian fp32 bytes) in sorted-name order.

    Framed with lengths so no two different states can share a byte stream; values are
    converted to fp32 on CPU, so the same weights hash the same on any machine.
    """
    tensors = _tensors_of(model_or_state)
    h = hashlib.sha256(HASH_FORMAT)
    for name in sorted(tensors):
        t = tensors[name].detach()
        name_b, dtype_b = name.encode("utf-8"), str(t.dtype).removeprefix("torch.").encode()
        h.update(struct.pack("<I", len(name_b)) + name_b)
        h.update(struct.pack("<I", t.dim()) + struct.pack(f"<{t.dim()}Q", *t.shape))
        h.update(struct.pack("<I", len(dtype_b)) + dtype_b)
        data = t.to(device="cpu", dtype=torch.float32).contiguous().numpy().astype("<f4", copy=False)
        h.update(struct.pack("<Q", data.nbytes))
        h.update(data.tobytes())
    return h.hexdigest()
