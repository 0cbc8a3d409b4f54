"""The subnet's published configuration: everything nodes must share to train one model.

A validator and its miners load the same ``SubnetConfig`` (a JSON file the subnet owner
publishes; ``swarmtrain local`` writes one). ``config_hash`` lets nodes check they agree.

Example:
    >>> cfg = SubnetConfig(netuid=1, dataset_name="builtin", dataset_hash="ab" * 32)
    >>> window_blocks = cfg.blocks_per_window
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.files import atomic_write

if TYPE_CHECKING:  # a type only: the codec (torch) is imported when a node asks for it
    from protocol.codec import CodecConfig

PROTOCOL_VERSION = 1


class SubnetConfig(BaseModel):
    """Training hyperparameters every node of a subnet must agree on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    netuid: int = Field(1, ge=0, le=65535, description="subnet id on chain")
    seed: str = Field("swarmtrain", min_length=1, max_length=128, description="subnet seed: model init and data assignment")
    preset: str = Field("tiny", description="model size preset, see protocol.model.PRESETS")
    dataset_name: str = Field("builtin", description="dataset source: 'builtin', a path, or 'hf:NAME'")
    dataset_hash: str = Field("", max_length=64, description="sha256 of the dataset's token stream; empty = take the local one (devnets only)")
    seq_len: int = Field(64, ge=8, le=8192, description="tokens per sample")
    batch_size: int = Field(8, ge=1, le=4096, description="samples per inner step")
    inner_steps: int = Field(20, ge=1, le=10_000, description="H: inner AdamW steps per window")
    inner_lr: float = Field(3e-3, gt=0, le=1.0)
    inner_weight_decay: float = Field(0.0, ge=0, le=1.0)
    blocks_per_window: int = Field(20, ge=1, le=100_000)
    codec_chunk: int = Field(64, ge=1, le=4096, description="chunk side: 2-D tensors cut into chunk x chunk blocks")
    codec_topk: int = Field(64, ge=1, description="values kept per chunk")
    codec_bits: int = Field(2, ge=1, le=8, description="bits per kept value")
    error_feedback_beta: float = Field(0.7, ge=0, le=1.0, description="error-feedback decay (tuned with scripts/bench_convergence.py)")
    outer_lr: float = Field(1.5, gt=0, le=10.0, description="outer SGD step on the aggregate (tuned with scripts/bench_convergence.py)")
    outer_momentum: float = Field(0.0, ge=0, lt=1.0)
    aggregation: Literal["mean", "per-position"] = Field("per-position", description="how contributors are averaged: plain mean, or each position over the contributors that sent it")
    top_g: int = Field(8, ge=1, le=1024, description="contributors aggregated per window")
    eval_samples: int = Field(32, ge=1, le=4096, description="samples per own/random evaluation batch (fewer make the own-vs-random test noisy)")
    max_evaluations: int = Field(64, ge=1, description="miners evaluated per window at most")
    checkpoint_every: int = Field(5, ge=1, description="K: full checkpoint every K windows")

    # Tokenizer (protocol/tokenizer.py, docs/data.md): the defaults are the byte tokenizer.
    tokenizer: str = Field("bytes", min_length=1, max_length=1024, description="'bytes', or the path or URL of a Hugging Face tokenizers JSON file")
    tokenizer_hash: str = Field("", pattern=r"^([0-9a-f]{64})?$", description="sha256 of the tokenizer file; empty with 'bytes' (or on devnets)")
    vocab_size: int = Field(264, ge=2, le=1_000_000, description="model vocabulary: 264 for 'bytes', the tokenizer's size rounded up to 64 otherwise")

    @property
    def seed_bytes(self) -> bytes:
        return self.seed.encode("utf-8")

    @property
    def samples_per_window(self) -> int:
        return self.inner_steps * self.batch_size

    def codec_config(self) -> CodecConfig:
        """The update codec every miner encodes with and every validator decodes with."""
        from protocol.codec import CodecConfig

        return CodecConfig(chunk=self.codec_chunk, topk=self.codec_topk, bits=self.codec_bits)

    def config_hash(self) -> str:
        """sha256 over the canonical JSON of every field."""
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> SubnetConfig:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def save(self, path: str | Path) -> None:
        atomic_write(Path(path), self.model_dump_json(indent=2).encode("utf-8"))
