"""A standalone model file: weights, their ``ModelConfig`` and model hash, without a subnet.

A node's own model is a ``node.model_state.ModelState`` file (it carries the subnet config and
the outer optimizer). A model that belongs to no subnet — a Hugging Face model brought in with
``swarmtrain import --hf`` (a teacher, say) — is written here instead: safetensors with the
config JSON, the model hash and a JSON ``extra`` in its metadata, checked on every read.
``swarmtrain export --hf`` reads both kinds.

Example:
    >>> digest = save_model_file(Path("teacher.safetensors"), model, cfg, extra={"source": "hf"})
    >>> weights, cfg, extra = load_model_file(Path("teacher.safetensors"))   # ModelFileError
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from protocol.files import atomic_write
from protocol.model import ModelConfig, expected_spec, model_hash

META_CONFIG = "swarmtrain.model_config"
META_HASH = "swarmtrain.model_hash"
META_EXTRA = "swarmtrain.extra"


class ModelFileError(ValueError):
    """A model file is unreadable, inconsistent with its config, or tampered with."""


def save_model_file(path: Path, model: nn.Module | Mapping[str, Tensor], cfg: ModelConfig,
                    extra: dict[str, Any] | None = None) -> str:
    """Write weights + config + model hash (+ JSON ``extra``) crash-safely; returns the hash."""
    from safetensors.torch import save

    named = dict(model.named_parameters()) if isinstance(model, nn.Module) else dict(model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in named.items()}
    digest = model_hash(tensors)
    metadata = {META_CONFIG: cfg.model_dump_json(), META_HASH: digest,
                META_EXTRA: json.dumps(extra or {}, sort_keys=True)}
    atomic_write(Path(path), save(tensors, metadata=metadata))
    return digest


def load_model_file(path: Path) -> tuple[dict[str, Tensor], ModelConfig, dict[str, Any]]:
    """(weights, cfg, extra) of a ``save_model_file`` file, once names, shapes and hash check out."""
    path = Path(path)
    tensors, metadata = _read(path)
    cfg, stored_hash, extra = _parse_metadata(path, metadata)
    want = expected_spec(cfg)
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != want:
        diff = sorted(set(got.items()) ^ set(want.items()))[:4]
        raise ModelFileError(f"model file {path} does not match config {cfg.name!r}: e.g. {diff}")
    actual = model_hash(tensors)
    if actual != stored_hash:
        raise ModelFileError(f"model file {path} model hash mismatch: stored {stored_hash[:16]}…, "
                             f"weights hash to {actual[:16]}…")
    return tensors, cfg, extra


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError) as e:
        raise ModelFileError(f"cannot read model file {path}: {e}") from e
    return tensors, metadata


def _parse_metadata(path: Path, metadata: Mapping[str, str]) -> tuple[ModelConfig, str, dict[str, Any]]:
    missing = [k for k in (META_CONFIG, META_HASH, META_EXTRA) if k not in metadata]
    if missing:
        raise ModelFileError(f"model file {path} lacks metadata {missing}")
    try:
        cfg = ModelConfig.model_validate_json(metadata[META_CONFIG])
        extra = json.loads(metadata[META_EXTRA])
    except ValueError as e:
        raise ModelFileError(f"model file {path} has invalid metadata: {e}") from e
    if not isinstance(extra, dict):
        raise ModelFileError(f"model file {path}: extra metadata is not a JSON object")
    return cfg, metadata[META_HASH], extra
