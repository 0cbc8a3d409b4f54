"""Which torch device a node computes on, refusing one this machine lacks with what to do.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto")           # cuda, else mps, else cpu
"""

from __future__ import annotations

import torch


class DeviceUnavailableError(RuntimeError):
    """The requested torch device is not usable on this machine."""


def _no_cuda(name: str) -> str:
    if torch.version.cuda is None:  # a CPU-only build: no driver can help
        return (f"device {name!r} requested, but this torch ({torch.__version__}) was built without CUDA: "
                "install a CUDA build of torch for your GPU, or pass --device cpu (or auto)")
    return (f"device {name!r} requested, but torch sees no CUDA GPU (is the NVIDIA driver loaded? "
            "check nvidia-smi and CUDA_VISIBLE_DEVICES), or pass --device cpu (or auto)")


def resolve_device(name: str) -> torch.device:
    """Map 'cpu' | 'cuda' | 'cuda:N' | 'mps' | 'auto' to a usable torch.device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(_no_cuda(name))
    if name.startswith("cuda:") and name[5:].isdigit() and int(name[5:]) >= torch.cuda.device_count():
        raise DeviceUnavailableError(f"device {name!r} requested, but torch sees {torch.cuda.device_count()} "
                                     "GPU(s), numbered from 0: pass --device cuda:0 (or auto)")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailableError("device 'mps' requested but Metal is not available: pass --device cpu (or auto)")
    if name != "cpu" and not name.startswith(("cuda", "mps")):
        raise DeviceUnavailableError(f"unknown device {name!r}: use cpu, cuda, cuda:N, mps or auto")
    return torch.device(name)
