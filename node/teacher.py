"""The pinned teacher of an outputs-mode subnet: load it, check it is the one the config names,
and run it (miners label with it, validators recompute with it).

A teacher is a standalone model file (``node.model_file``, what ``swarmtrain import --hf``
writes), a node's model state file (a trained subnet's ``model.safetensors``),
or a Hugging Face LLaMA-architecture directory (``node.hf_interop``). It is pinned by its
``model_hash`` (sha256 over names, shapes and fp32 weights), which is the same whichever of
these files holds the weights. A miner runs it in bf16 on a GPU and in fp32 on a CPU; a
validator recomputes its few checked positions in fp32 everywhere, so the only numerical
difference a check sees is the miner's (the subnet's tolerances cover bf16 against fp32,
docs/benchmarks.md). Log-softmax is always taken in fp32.

Example:
    >>> teacher = load_teacher(cfg, device="cpu")          # TeacherError names the fix
    >>> logp = teacher.logprobs(batch[:, :-1])               # (B, T, V) fp32 on CPU
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from node.model_file import ModelFileError, load_model_file
from node.model_state import FORMAT as MODEL_STATE_FORMAT
from protocol.model import ModelConfig, Transformer, build_model, model_hash
from protocol.subnet import SubnetConfig

CPU_MAX_BATCH = 32  # larger CPU batches are no faster per token


class TeacherError(ValueError):
    """The teacher cannot be loaded, or is not the one the subnet config pins."""


@dataclass
class Teacher:
    """A loaded teacher on its device, in its compute dtype (bf16 on GPU, fp32 on CPU)."""

    model: Transformer
    config: ModelConfig
    hash: str
    device: torch.device
    dtype: torch.dtype

    @torch.no_grad()
    def logprobs(self, inputs: Tensor) -> Tensor:
        """Log-probabilities (B, T, V) fp32 on the CPU of the next token after each input position."""
        logits = self.model(inputs.to(self.device))
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def batch_size(self, seq_len: int) -> int:
        """Samples per forward pass that fit the device's free memory (half of it)."""
        return fit_batch(self.config, seq_len, self.device)


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a CUDA GPU, fp32 elsewhere (CPU, MPS)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def fit_batch(cfg: ModelConfig, seq_len: int, device: torch.device) -> int:
    """Samples per forward pass: half the free memory over an estimate of one sample's peak
    (fp32 log-probs and top-k over the vocabulary, plus a few activations per layer)."""
    per_sample = seq_len * (cfg.vocab_size * 16 + (cfg.dim * 8 + cfg.ffn_hidden * 6) * 4)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, min(4096, int(free * 0.5) // per_sample))
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 2**31
    return max(1, min(CPU_MAX_BATCH, int(free * 0.25) // per_sample))


# ---- loading -----------------------------------------------------------------------------------


def read_teacher(path: str | Path) -> tuple[Transformer, ModelConfig]:
    """The model (fp32, CPU) in a model file (``node.model_file``), a model state file or a transformers directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        from node.hf_interop import HfInteropError, load_hf_causal_lm

        try:
            return load_hf_causal_lm(path)
        except HfInteropError as exc:
            raise TeacherError(f"teacher {path}: {exc}") from exc
    if not path.is_file():
        raise TeacherError(f"teacher {path} not found: copy the subnet's teacher there, or point --teacher at it "
                           "(its model hash must be the config's teacher_hash)")
    meta = _metadata(path)
    if meta.get("format") == MODEL_STATE_FORMAT:
        return _from_model_state(path, meta)
    try:
        state, cfg, _ = load_model_file(path)
    except ModelFileError as exc:
        raise TeacherError(f"teacher {path}: {exc}") from exc
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    return model.eval(), cfg


def _metadata(path: Path) -> dict[str, str]:
    """The safetensors metadata of ``path`` (which kind of model file it is)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise TeacherError(f"teacher {path} is not a safetensors file: {exc}") from exc


def _from_model_state(path: Path, meta: dict[str, str]) -> tuple[Transformer, ModelConfig]:
    from node.model_state import ModelState, ModelStateError

    try:
        state = ModelState.load(path, SubnetConfig.model_validate_json(meta["subnet_config"]))
    except (ModelStateError, KeyError, ValueError) as exc:
        raise TeacherError(f"teacher {path}: {exc}") from exc
    return state.model.eval(), state.model.cfg


def teacher_hash_of(path: str | Path) -> str:
    """The model hash a config pins for the teacher at ``path`` (``swarmtrain subnet init``)."""
    model, _ = read_teacher(path)
    return model_hash(model)


def load_teacher(cfg: SubnetConfig, device: str | torch.device = "cpu", path: str | Path | None = None,
                 dtype: torch.dtype | None = None) -> Teacher:
    """The subnet's teacher (from ``path`` if given, else ``cfg.teacher``) on ``device`` in ``dtype``
    (default ``compute_dtype(device)``), after checking its hash, vocabulary and context length."""
    where = path or cfg.teacher
    model, mcfg = read_teacher(where)
    digest = model_hash(model)
    if digest != cfg.teacher_hash:
        raise TeacherError(f"teacher {where} has model hash {digest[:16]}…, the subnet pins {cfg.teacher_hash[:16]}…: "
                           "get the subnet's teacher (its owner publishes it) and point --teacher at it")
    if mcfg.vocab_size != cfg.vocab_size:
        raise TeacherError(f"teacher vocabulary {mcfg.vocab_size} != the subnet's vocab_size {cfg.vocab_size}: "
                           "the teacher must read the subnet's tokens")
    if mcfg.max_seq_len < cfg.seq_len:
        raise TeacherError(f"teacher context {mcfg.max_seq_len} is shorter than the subnet's seq_len {cfg.seq_len}")
    dev = torch.device(device)
    dtype = dtype or compute_dtype(dev)
    return Teacher(model.to(device=dev, dtype=dtype).eval(), mcfg, digest, dev, dtype)


__all__ = ["Teacher", "TeacherError", "compute_dtype", "fit_batch", "load_teacher", "read_teacher", "teacher_hash_of"]
