"""What a node loads before it starts: the subnet's config and the dataset it pins.

Example:
    >>> cfg = load_subnet_config(None, netuid=1)
    >>> cfg.netuid
    1
"""

from __future__ import annotations

from pathlib import Path

from protocol.data import DatasetSpec, TokenDataset, open_dataset, verify_dataset
from protocol.subnet import SubnetConfig


def load_subnet_config(path: Path | None, netuid: int, preset: str | None = None) -> SubnetConfig:
    """The subnet config file if given (its netuid and, if asked, preset must agree), else
    the defaults for ``netuid``; ValueError names the flag that disagrees with the file."""
    if path is None:
        return SubnetConfig(netuid=netuid, **({"preset": preset} if preset else {}))
    cfg = SubnetConfig.load(path)
    if cfg.netuid != netuid:
        raise ValueError(f"--netuid {netuid} but {path} is for netuid {cfg.netuid}")
    if preset is not None and preset != cfg.preset:
        raise ValueError(f"--preset {preset} but the subnet trains preset {cfg.preset!r}")
    return cfg


def subnet_dataset(cfg: SubnetConfig) -> TokenDataset:
    """The subnet's dataset; refuses to start (DatasetMismatchError) on other tokens."""
    ds = open_dataset(cfg.dataset_name)
    verify_dataset(ds, DatasetSpec(name=cfg.dataset_name, content_hash=cfg.dataset_hash))
    return ds
