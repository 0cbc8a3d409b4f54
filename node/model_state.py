"""The network model θ_w every node holds, and the outer step that moves it to θ_{w+1}.

``ModelState`` keeps the model on CPU in fp32 (so every node computes bit-identical
weights), the window it belongs to, and the outer optimizer's state. Aggregates are
applied with ``apply_aggregate``; a resulting hash different from the published
``next_model_hash`` raises ``ModelDesyncError`` and leaves the state unchanged. It owns
the model hash: computed once per version of the weights, whoever asks how often.

Example:
    >>> state = ModelState.initial(SubnetConfig())          # θ_0, window 0
    >>> state.apply_aggregate(header, payload)               # θ_1, window 1
    >>> state.save(Path("model.safetensors")); ModelState.load(Path("model.safetensors"), cfg).hash()
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save
from torch import Tensor

from node.tensor_tree import flatten, unflatten
from protocol.aggregate_payload import decode_aggregate
from protocol.files import atomic_write
from protocol.model import Transformer, initial_model, model_hash, param_spec
from protocol.outer import OuterOptimizer
from protocol.subnet import SubnetConfig

FORMAT = "swarmtrain-model-state/1"
_OUTER_PREFIX = "outer/"


class ModelDesyncError(RuntimeError):
    """Applying an aggregate did not give the model hash the network published."""


class ModelStateError(ValueError):
    """A saved model state is unreadable, for another subnet config, or tampered with."""


class ModelState:
    """θ_w for a subnet config, its window, and the outer optimizer (CPU, fp32)."""

    def __init__(self, cfg: SubnetConfig, model: Transformer, window: int, outer: OuterOptimizer) -> None:
        self.cfg = cfg
        self.model = model
        self.window = window
        self.outer = outer
        self.spec = param_spec(model)
        self._hash: tuple[tuple[tuple[int, int], ...], str] | None = None  # (weights version, hash)

    @classmethod
    def initial(cls, cfg: SubnetConfig) -> ModelState:
        return cls(cfg, initial_model(cfg), 0, _new_outer(cfg))

    def hash(self) -> str:
        """``protocol.model.model_hash`` of θ, computed once per version of the weights."""
        version = self._weights_version()
        if self._hash is None or self._hash[0] != version:
            self._hash = (version, model_hash(self.model))
        return self._hash[1]

    def _weights_version(self) -> tuple[tuple[int, int], ...]:
        # torch bumps a tensor's version counter on every in-place write (the outer step, a
        # restore, an optimizer step on ``model``), so any path that changes θ changes this.
        return tuple((id(p), p._version) for p in self.model.parameters())

    def params(self) -> dict[str, Tensor]:
        """Detached views of the parameters, by name (do not modify)."""
        return {name: p.detach() for name, p in self.model.named_parameters()}

    def clone_model(self) -> Transformer:
        """An independent copy of the model (for training or evaluation elsewhere)."""
        return copy.deepcopy(self.model)

    def copy(self) -> ModelState:
        return ModelState(self.cfg, self.clone_model(), self.window, copy.deepcopy(self.outer))

    # -- the outer step ------------------------------------------------------------------
    def apply_payload(self, window: int, payload: bytes, contributors: int = 1) -> str:
        """Apply the aggregate bytes of ``window`` (θ_window -> θ_window+1); returns the new hash.

        An aggregate with no contributors leaves the weights (and momentum) unchanged.
        """
        if window != self.window:
            raise ValueError(f"aggregate is for window {window}, model holds window {self.window}")
        if contributors > 0 and payload:
            update = decode_aggregate(payload, self.spec)
            self.outer.apply(self.model, update)
        self.window += 1
        return self.hash()

    def apply_aggregate(self, header: Any, payload: bytes) -> str:
        """Apply a published ``Aggregate`` and check ``header.next_model_hash``.

        On a mismatch the state is restored to θ_w and ``ModelDesyncError`` raised.
        """
        base = getattr(header, "base_model_hash", None)
        if base and header.window == self.window and base != self.hash():
            raise ModelDesyncError(f"window {self.window}: aggregate is based on {base[:12]}…, we hold {self.hash()[:12]}…")
        saved = (self._snapshot(), copy.deepcopy(self.outer.state_dict()), self.window)
        new_hash = self.apply_payload(header.window, payload, len(header.contributors))
        if new_hash != header.next_model_hash:
            self._restore(*saved)
            raise ModelDesyncError(
                f"window {header.window}: model hash after the aggregate is {new_hash[:12]}…, "
                f"the validator published {header.next_model_hash[:12]}…"
            )
        return new_hash

    def _snapshot(self) -> dict[str, Tensor]:
        return {k: v.clone() for k, v in self.params().items()}

    def _restore(self, params: dict[str, Tensor], outer_state: Any, window: int) -> None:
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(params[name])
        self.outer.load_state_dict(outer_state)
        self.window = window

    # -- persistence -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """safetensors bytes: weights, outer state, and metadata (config, window, hash)."""
        tensors = {k: v.contiguous().clone() for k, v in self.params().items()}
        outer_tensors, outer_meta = flatten(self.outer.state_dict())
        tensors.update({_OUTER_PREFIX + k: v.contiguous() for k, v in outer_tensors.items()})
        meta = {
            "format": FORMAT,
            "subnet_config": self.cfg.model_dump_json(),
            "window": str(self.window),
            "model_hash": self.hash(),
            "outer_state": json.dumps(outer_meta, sort_keys=True),
        }
        return safetensors_save(tensors, metadata=meta)

    def save(self, path: Path) -> str:
        """Write atomically; returns the model hash."""
        atomic_write(Path(path), self.to_bytes())
        return self.hash()

    @classmethod
    def load(cls, path: Path, cfg: SubnetConfig) -> ModelState:
        """Load a state saved for ``cfg``; checks config, shapes and the stored hash."""
        tensors, meta = _read(Path(path))
        return cls._from_parts(tensors, meta, cfg, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, cfg: SubnetConfig) -> ModelState:
        from safetensors.torch import load as safetensors_load

        try:
            tensors = safetensors_load(data)
            meta = _metadata_of_bytes(data)
        except (SafetensorError, ValueError) as exc:
            raise ModelStateError(f"unreadable model state: {exc}") from exc
        return cls._from_parts(tensors, meta, cfg, "<bytes>")

    @classmethod
    def _from_parts(cls, tensors: dict[str, Tensor], meta: dict[str, str], cfg: SubnetConfig, where: str) -> ModelState:
        if meta.get("format") != FORMAT:
            raise ModelStateError(f"{where}: not a swarmtrain model state")
        saved_cfg = SubnetConfig.model_validate_json(meta["subnet_config"])
        if saved_cfg.config_hash() != cfg.config_hash():
            raise ModelStateError(f"{where}: saved for another subnet config")
        state = cls.initial(cfg)
        _load_weights(state, tensors, where)
        outer_tensors = {k[len(_OUTER_PREFIX):]: v for k, v in tensors.items() if k.startswith(_OUTER_PREFIX)}
        state.outer.load_state_dict(unflatten(json.loads(meta["outer_state"]), outer_tensors))
        state.window = int(meta["window"])
        if state.hash() != meta.get("model_hash"):
            raise ModelStateError(f"{where}: weights do not match the stored model hash")
        return state


def _new_outer(cfg: SubnetConfig) -> OuterOptimizer:
    return OuterOptimizer(cfg.outer_lr, cfg.outer_momentum, cfg.outer_nesterov)


def _load_weights(state: ModelState, tensors: Mapping[str, Tensor], where: str) -> None:
    missing = [n for n in state.spec if n not in tensors]
    wrong = [n for n, s in state.spec.items() if n in tensors and tuple(tensors[n].shape) != s]
    if missing or wrong:
        raise ModelStateError(f"{where}: missing {missing[:3]} / wrong shape {wrong[:3]}")
    with torch.no_grad():
        for name, p in state.model.named_parameters():
            p.copy_(tensors[name].to(torch.float32))


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (no __iter__)
    except (SafetensorError, OSError) as exc:
        raise ModelStateError(f"cannot read model state {path}: {exc}") from exc
    return tensors, meta


def _metadata_of_bytes(data: bytes) -> dict[str, str]:
    # safetensors layout: u64 header length | JSON header (with "__metadata__").
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return dict(header.get("__metadata__") or {})
