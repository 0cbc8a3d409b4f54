"""The subnet's published configuration: everything nodes must share to train one model.

A validator and its miners load the same ``SubnetConfig`` (a JSON file the subnet owner
publishes; ``swarmtrain subnet init`` writes one with every field explained under ``"_doc"``).
``config_hash`` lets nodes check they agree; ``config_diff`` says which fields differ.
Keys that start with ``_`` are comments: ``load`` ignores them and they are not hashed.

Example:
    >>> cfg = SubnetConfig(netuid=1, dataset_name="builtin", dataset_hash="ab" * 32)
    >>> window_blocks = cfg.blocks_per_window
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.files import atomic_write

if TYPE_CHECKING:  # a type only: the codec (torch) is imported when a node asks for it
    from protocol.codec import CodecConfig

PROTOCOL_VERSION = 1

# Defaults per model preset for the fields a config leaves out. Measured with
# scripts/bench_convergence.py (docs/benchmarks.md, Convergence): at equal tokens, H = 5
# keeps the network within a few percent of centralized AdamW where H = 20 left it 4-6 %
# behind; the 12.8 M-parameter `small` preset trains best at a lower lr than `tiny`. The
# GPU presets keep the field defaults (H = 20, lr 3e-3; not measured on this project's
# CPUs; a larger H sends fewer payloads per token).
PRESET_DEFAULTS: dict[str, dict[str, int | float]] = {
    "tiny": {"inner_steps": 5},
    "small": {"inner_steps": 5, "inner_lr": 1e-3},
}
DEFAULT_INNER_STEPS = 20
DEFAULT_INNER_LR = 3e-3

# Outputs mode (docs/outputs.md): the student update the lead publishes is the whole step
# (θ_{w+1} = θ_w − Δ), so the outer SGD step defaults to lr 1 there (explicit values win).
TASK_DEFAULTS: dict[str, dict[str, int | float]] = {"outputs": {"outer_lr": 1.0}}
# The outputs-mode block of fields: at their defaults they are left out of config_hash, so
# the hash of every gradient-mode config is what it was before outputs mode existed.
OUTPUTS_FIELDS = ("task", "teacher", "teacher_hash", "outputs_topk", "outputs_value_bits",
                  "outputs_spot_checks", "outputs_tolerance", "outputs_median_tolerance", "outputs_samples",
                  "distill_hard_weight")


class SubnetConfig(BaseModel):
    """Training hyperparameters every node of a subnet must agree on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    netuid: int = Field(1, ge=0, le=65535, description="subnet id on chain")
    seed: str = Field("swarmtrain", min_length=1, max_length=128, description="subnet seed: model init and data assignment")
    preset: str = Field("tiny", description="model size preset: tiny, small, 150m or 1b (protocol.model.PRESETS)")
    dataset_name: str = Field("builtin", description="dataset: a folder or URL prepared by 'swarmtrain data prepare', 'builtin', a token file, or 'hf:NAME'")
    dataset_hash: str = Field("", max_length=64, description="sha256 of the dataset (its manifest.json, or its token stream); empty = take the local one (devnets only)")
    seq_len: int = Field(64, ge=8, le=8192, description="tokens per sample")
    batch_size: int = Field(8, ge=1, le=4096, description="samples per inner step")
    inner_steps: int = Field(DEFAULT_INNER_STEPS, ge=1, le=10_000, description="H: inner AdamW steps per window (when absent: PRESET_DEFAULTS of the preset, else 20)")
    inner_lr: float = Field(DEFAULT_INNER_LR, gt=0, le=1.0, description="inner AdamW lr (when absent: PRESET_DEFAULTS of the preset, else 3e-3)")
    inner_weight_decay: float = Field(0.0, ge=0, le=1.0, description="weight decay of the inner AdamW steps")
    blocks_per_window: int = Field(20, ge=1, le=100_000, description="chain blocks per window: window = block // blocks_per_window")
    codec_chunk: int = Field(64, ge=1, le=4096, description="chunk side: 2-D tensors cut into chunk x chunk blocks")
    codec_topk: int = Field(48, ge=1, description="values kept per chunk x chunk block (tuned with scripts/bench_convergence.py)")
    codec_bits: int = Field(1, ge=1, le=8, description="bits per kept value: 1 = sign and one magnitude per tensor (tuned with scripts/bench_convergence.py)")
    error_feedback_beta: float = Field(0.7, ge=0, le=1.0, description="error-feedback decay (tuned with scripts/bench_convergence.py)")
    outer_lr: float = Field(1.5, gt=0, le=10.0, description="outer SGD step on the aggregate (tuned with scripts/bench_convergence.py)")
    outer_momentum: float = Field(0.0, ge=0, lt=1.0, description="outer momentum m (0: plain SGD on the aggregate)")
    outer_nesterov: bool = Field(False, description="Nesterov form of the outer momentum (DiLoCo's outer step; needs outer_momentum > 0)")
    aggregation: Literal["mean", "per-position"] = Field("per-position", description="how contributors are averaged: plain mean, or each position over the contributors that sent it")
    top_g: int = Field(8, ge=1, le=1024, description="contributors aggregated per window")
    eval_samples: int = Field(32, ge=1, le=4096, description="batch size of the validator's evaluation forward passes (how many samples it evaluates is set by the criteria)")
    max_evaluations: int = Field(64, ge=1, description="miners evaluated per window at most")
    checkpoint_every: int = Field(5, ge=1, description="K: full checkpoint every K windows")
    storage: Literal["validator", "s3"] = Field("validator", description="where aggregates and checkpoints are read from: the lead validator's HTTPS routes, or the S3-compatible store its commitment names (node/storage.py)")

    # Tokenizer (protocol/tokenizer.py, docs/data.md): the defaults are the byte tokenizer.
    tokenizer: str = Field("bytes", min_length=1, max_length=1024, description="'bytes', or the path or URL of a Hugging Face tokenizers JSON file")
    tokenizer_hash: str = Field("", pattern=r"^([0-9a-f]{64})?$", description="sha256 of the tokenizer file; empty with 'bytes' (or on devnets)")
    vocab_size: int = Field(264, ge=2, le=1_000_000, description="model vocabulary: 264 for 'bytes', the tokenizer's size rounded up to 64 otherwise")

    # Outputs mode (docs/outputs.md): miners return a pinned teacher's top-k outputs on their
    # assigned samples, validators verify them by recomputation, and the network's model
    # (`preset`) is the student distilled from them. Ignored by gradient-mode subnets.
    task: Literal["gradients", "outputs"] = Field("gradients", description="what miners return: 'gradients' (pseudo-gradients of the shared model) or 'outputs' (a teacher's top-k outputs; `preset` is then the student)")
    teacher: str = Field("", max_length=1024, description="outputs: the teacher, a swarmtrain checkpoint (.safetensors) or a Hugging Face causal-LM directory (nodes may keep it elsewhere: --teacher)")
    teacher_hash: str = Field("", pattern=r"^([0-9a-f]{64})?$", description="outputs: model hash (sha256 over names, shapes and fp32 weights) of the teacher; nodes refuse another")
    outputs_topk: int = Field(16, ge=1, le=1024, description="outputs: log-probabilities sent per position (the teacher's top k, plus the remaining mass)")
    outputs_value_bits: int = Field(8, ge=2, le=12, description="outputs: bits per log-probability: steps of 16/2**bits nats over [-16, 0]")
    outputs_spot_checks: int = Field(48, ge=1, le=4096, description="outputs: positions a validator recomputes per submission; one failed check zeroes it")
    outputs_tolerance: float = Field(0.6, gt=0, le=4.0, description="outputs: nats one checked position may deviate from the recomputation (beyond quantization); one beyond zeroes the submission (measured: docs/benchmarks.md)")
    outputs_median_tolerance: float = Field(0.05, gt=0, le=1.0, description="outputs: nats the median deviation of a submission's checks may reach (catches another teacher or a cheaper precision; measured: docs/benchmarks.md)")
    outputs_samples: int = Field(1024, ge=1, le=65_536, description="outputs: samples assigned per miner per window (a miner labels as many of them as it can, in order)")
    distill_hard_weight: float = Field(0.0, ge=0, le=1.0, description="outputs: weight of the hard-label loss mixed into the student's KL loss")

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: object) -> object:
        """Fields left out take the preset's measured defaults (explicit values win)."""
        if isinstance(data, dict):
            preset = data.get("preset", cls.model_fields["preset"].default)
            defaults = dict(PRESET_DEFAULTS.get(preset, {})) if isinstance(preset, str) else {}
            task = data.get("task")
            defaults.update(TASK_DEFAULTS.get(task, {}) if isinstance(task, str) else {})
            return {**{k: v for k, v in defaults.items() if k not in data}, **data}
        return data

    @model_validator(mode="after")
    def _check_outer(self) -> SubnetConfig:
        if self.outer_nesterov and self.outer_momentum == 0:
            raise ValueError("outer_nesterov needs outer_momentum > 0")
        if self.task == "outputs":
            if not self.teacher or not self.teacher_hash:
                raise ValueError("task 'outputs' needs the teacher and its teacher_hash: `swarmtrain subnet init "
                                 "--set task=outputs --set teacher=PATH` computes the hash")
            if self.outputs_topk >= self.vocab_size:
                raise ValueError(f"outputs_topk {self.outputs_topk} must be below vocab_size {self.vocab_size}")
        return self

    @property
    def seed_bytes(self) -> bytes:
        return self.seed.encode("utf-8")

    @property
    def samples_per_window(self) -> int:
        """Samples assigned to each uid per window: H × batch (gradients), ``outputs_samples`` (outputs)."""
        if self.task == "outputs":
            return self.outputs_samples
        return self.inner_steps * self.batch_size

    def codec_config(self) -> CodecConfig:
        """The update codec every miner encodes with and every validator decodes with."""
        from protocol.codec import CodecConfig

        return CodecConfig(chunk=self.codec_chunk, topk=self.codec_topk, bits=self.codec_bits)

    def config_hash(self) -> str:
        """sha256 over the canonical JSON of every field (outputs-mode fields only where they
        differ from their defaults: a gradient-mode config hashes as it always did)."""
        fields = self.model_dump()
        for name in OUTPUTS_FIELDS:
            if fields[name] == SubnetConfig.model_fields[name].default:
                del fields[name]
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> SubnetConfig:
        """The config in a JSON file; keys starting with ``_`` are comments and ignored."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(doc, dict):
            doc = {k: v for k, v in doc.items() if not k.startswith("_")}
        return cls.model_validate(doc)

    def save(self, path: str | Path) -> None:
        atomic_write(Path(path), self.model_dump_json(indent=2).encode("utf-8"))


def field_docs() -> dict[str, str]:
    """Every field's meaning, in declaration order (what ``swarmtrain subnet init`` writes)."""
    return {name: f.description or "" for name, f in SubnetConfig.model_fields.items()}


def config_diff(ours: SubnetConfig, theirs: SubnetConfig) -> list[tuple[str, object, object]]:
    """``(field, our value, their value)`` for every field that differs, in declaration order."""
    a, b = ours.model_dump(), theirs.model_dump()
    return [(name, a[name], b[name]) for name in SubnetConfig.model_fields if a[name] != b[name]]
