"""Nested state (optimizer state dicts, error-feedback buffers) as flat tensors + a JSON skeleton.

safetensors stores only named tensors, and nodes load no pickle, so a nested structure is
split in two: every tensor under a path name (``"buffers/tok_emb.weight"``), and a JSON
skeleton that holds everything else and marks where each tensor goes. A dict whose keys
are all strings stays a JSON object; one with other keys (torch optimizers key their state
by int) is a ``{"__dict__": [[key type, key, value], ...]}`` list, so the keys come back
with their type. Two paths that would get the same name are refused.

Example:
    >>> tensors, skeleton = flatten({"step": 3, "state": {0: {"m": torch.zeros(2)}}})
    >>> sorted(tensors)
    ['state/0/m']
    >>> unflatten(skeleton, tensors)["state"][0]["m"]
    tensor([0., 0.])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

_MARKERS = ("__tensor__", "__list__", "__dict__")
_KEY_TYPES = {"int": int, "str": str}


class TensorTreeError(ValueError):
    """A structure that cannot be stored, or a skeleton that does not fit its tensors."""


def flatten(obj: Any, prefix: str = "") -> tuple[dict[str, Tensor], Any]:
    """(tensors by path name, JSON skeleton) of ``obj``: tensors, dicts, lists, JSON scalars."""
    tensors: dict[str, Tensor] = {}
    skeleton = _flatten_into(obj, prefix, tensors)
    return tensors, skeleton


def _flatten_into(obj: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        if name in tensors:
            raise TensorTreeError(f"two tensors would both be named {name!r}")
        tensors[name] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": name}
    if isinstance(obj, Mapping):
        return _flatten_mapping(obj, name, tensors)
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten_into(v, _join(name, i), tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TensorTreeError(f"cannot store a {type(obj).__name__} at {name!r}")


def _flatten_mapping(obj: Mapping[Any, Any], name: str, tensors: dict[str, Tensor]) -> Any:
    if all(isinstance(k, str) and k not in _MARKERS for k in obj):
        return {k: _flatten_into(v, _join(name, k), tensors) for k, v in obj.items()}
    items = []
    for key, value in obj.items():
        kind = type(key).__name__
        if kind not in _KEY_TYPES:
            raise TensorTreeError(f"cannot store a {kind} dict key at {name!r}")
        items.append([kind, str(key), _flatten_into(value, _join(name, key), tensors)])
    return {"__dict__": items}


def _join(prefix: str, key: object) -> str:
    return f"{prefix}/{key}" if prefix else str(key)


def unflatten(skeleton: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Inverse of ``flatten`` (also reads the typed-key form older miner states used for every dict)."""
    if not isinstance(skeleton, dict):
        return skeleton
    if "__tensor__" in skeleton:
        name = skeleton["__tensor__"]
        if name not in tensors:
            raise TensorTreeError(f"the stored state lacks tensor {name!r}")
        return tensors[name]
    if "__list__" in skeleton:
        return [unflatten(v, tensors) for v in skeleton["__list__"]]
    if "__dict__" in skeleton:
        return {_KEY_TYPES.get(kind, str)(key): unflatten(v, tensors) for kind, key, v in skeleton["__dict__"]}
    return {k: unflatten(v, tensors) for k, v in skeleton.items()}
