"""What a node loads before it starts: the subnet's config and the dataset it pins.

The dataset is a prepared, sharded one (a folder with ``manifest.json`` or a URL:
``node.sharded_dataset``) or one of ``protocol.data.open_dataset``'s sources. Either way
the node refuses to start on other data than the config pins, on data made with another
tokenizer, or on token ids the model's vocabulary lacks.

Example:
    >>> cfg = load_subnet_config(None, netuid=1)
    >>> cfg.netuid
    1
"""

from __future__ import annotations

from pathlib import Path

from node.shard_sources import is_sharded_location, is_url
from node.sharded_dataset import ShardedDataset
from node.subnet_file import SubnetConfigError, read_subnet_config  # noqa: F401 (re-exported)
from protocol.data import Dataset, DatasetSpec, open_dataset, verify_dataset
from protocol.subnet import SubnetConfig
from protocol.tokenizer import (
    BYTES,
    VocabularyError,
    byte_tokenizer,
    check_config_tokenizer,
    check_local_tokenizer,
)


def load_subnet_config(path: Path | None, netuid: int, preset: str | None = None) -> SubnetConfig:
    """The subnet config file if given (its netuid and, if asked, preset must agree), else
    the defaults for ``netuid``; ValueError names the flag that disagrees with the file."""
    if path is None:
        return SubnetConfig.model_validate({"netuid": netuid, **({"preset": preset} if preset else {})})
    cfg = read_subnet_config(Path(path), netuid)
    if cfg.netuid != netuid:
        raise ValueError(f"--netuid {netuid} but {path} is for netuid {cfg.netuid}")
    if preset is not None and preset != cfg.preset:
        raise ValueError(f"--preset {preset} but the subnet trains preset {cfg.preset!r}")
    return cfg


def subnet_dataset(cfg: SubnetConfig) -> Dataset:
    """The subnet's dataset; refuses to start (a ``DataError``) on other tokens."""
    if is_sharded_location(cfg.dataset_name):
        sharded = ShardedDataset.open(cfg.dataset_name, expected_hash=cfg.dataset_hash)
        check_config_tokenizer(sharded.tokenizer, tokenizer=cfg.tokenizer, tokenizer_hash=cfg.tokenizer_hash,
                               vocab_size=cfg.vocab_size, where=f"dataset {cfg.dataset_name}")
        ds: Dataset = sharded
    else:
        ds = open_dataset(cfg.dataset_name)
        verify_dataset(ds, DatasetSpec(name=cfg.dataset_name, content_hash=cfg.dataset_hash))
        if cfg.dataset_name == "builtin" or cfg.dataset_name.startswith("hf:"):  # byte-tokenized sources
            check_config_tokenizer(byte_tokenizer(), tokenizer=cfg.tokenizer, tokenizer_hash=cfg.tokenizer_hash,
                                   vocab_size=cfg.vocab_size, where=f"dataset {cfg.dataset_name!r}")
    check_vocabulary(ds, cfg.vocab_size)
    check_tokenizer_file(cfg)
    return ds


def check_vocabulary(ds: Dataset, vocab_size: int) -> None:
    """Every token id must be an index of the model's embedding."""
    top = ds.max_token()
    if top >= vocab_size:
        raise VocabularyError(
            f"dataset {ds.name} holds token id {top}, but the model's vocabulary has {vocab_size} "
            f"ids: set the subnet config's vocab_size to at least {top + 1} (rounded up to a "
            "multiple of 64), or prepare the data with the subnet's tokenizer"
        )


def check_tokenizer_file(cfg: SubnetConfig) -> None:
    """A tokenizer file the config names and this node holds must be the pinned one. Nodes do
    not need the file to train (the shards hold token ids), so a missing one is fine."""
    if cfg.tokenizer == BYTES or is_url(cfg.tokenizer):
        return
    path = Path(cfg.tokenizer)
    if path.is_file():
        check_local_tokenizer(path, cfg.tokenizer_hash)
