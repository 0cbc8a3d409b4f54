"""`swarmtrain subnet init|show|fetch`: make, read and fetch the subnet's published config.

    swarmtrain subnet init --out subnet.json --preset tiny --dataset builtin --set inner_steps=10
    swarmtrain subnet show subnet.json
    swarmtrain subnet fetch --netuid 1 --subtensor.network finney --out subnet.json

``init`` writes every field with its meaning (under ``"_doc"``, ignored when loading) and
computes the dataset hash; ``fetch`` downloads the lead validator's config and checks it
against the hash that validator committed on chain.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmtrain.commands._chainargs import (
    add_netuid_arg,
    add_network_args,
    fail,
    network_of,
    subtensor_of,
)

if TYPE_CHECKING:
    from node.validators import ValidatorEndpoint
    from protocol.subnet import SubnetConfig

NAME = "subnet"
HELP = "write a documented subnet config (init), explain one (show), or fetch the lead validator's (fetch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="subnet_action", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="write a new subnet config: every field documented, dataset hash computed")
    init.add_argument("--out", type=Path, required=True, help="config file to write")
    init.add_argument("--netuid", type=int, default=1, help="subnet id (default 1)")
    init.add_argument("--preset", default=None, help="model preset: tiny, small, 150m, 1b (default tiny)")
    init.add_argument("--dataset", default="builtin",
                      help="builtin (default), a folder or URL prepared by 'swarmtrain data prepare', "
                           "a token file, or hf:NAME; its hash is computed and pinned")
    init.add_argument("--tokenizer", default=None, help="tokenizer file nodes are told about (prepared datasets)")
    init.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                      help="set any field, e.g. --set inner_steps=10 (repeatable; 'subnet show' lists them)")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    show = sub.add_parser("show", help="print every field of a config with its meaning, and its hash")
    show.add_argument("config", type=Path, help="subnet config file")
    fetch = sub.add_parser("fetch", help="download the lead validator's config (checked against its commitment)")
    add_netuid_arg(fetch)
    add_network_args(fetch)
    fetch.add_argument("--out", type=Path, required=True, help="config file to write")
    fetch.add_argument("--validator-uid", type=int, default=None, help="fetch from this validator (default: the lead)")


def run(args: argparse.Namespace) -> int:
    handlers = {"init": _init, "show": _show, "fetch": _fetch}
    try:
        return handlers[args.subnet_action](args)
    except (ValueError, OSError) as err:  # bad configs and files (``show`` imports nothing heavier)
        return fail(str(err))
    except Exception as err:
        from chain.errors import ChainError
        from protocol.data import DataError

        if isinstance(err, (ChainError, DataError)):
            return fail(str(err))
        raise


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["inner_steps=10", "seed=abc"]`` -> ``{"inner_steps": 10, "seed": "abc"}`` (JSON values
    where they parse, text otherwise); unknown fields are refused with the valid names."""
    import json

    from protocol.subnet import SubnetConfig

    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in SubnetConfig.model_fields:
            valid = ", ".join(SubnetConfig.model_fields)
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of: {valid}")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out


def dataset_pin(dataset: str, tokenizer: str | None) -> dict[str, Any]:
    """The dataset fields of the config, with the hash computed from the data itself."""
    from node.shard_sources import is_sharded_location
    from protocol.data import builtin_corpus, open_dataset

    if is_sharded_location(dataset):
        from swarmtrain.dataprep.subnet_fields import dataset_fields

        return dataset_fields(dataset, tokenizer)
    ds = builtin_corpus() if dataset == "builtin" else open_dataset(dataset)
    return {"dataset_name": dataset, "dataset_hash": ds.content_hash}


def _init(args: argparse.Namespace) -> int:
    from node.subnet_file import write_documented
    from protocol.subnet import SubnetConfig

    if args.out.exists() and not args.force:
        raise ValueError(f"{args.out} exists: pass --force to replace it, or choose another --out")
    fields: dict[str, Any] = {"netuid": args.netuid, **dataset_pin(args.dataset, args.tokenizer)}
    if args.preset:
        fields["preset"] = args.preset
    fields.update(parse_sets(args.sets))
    if fields.get("task") == "outputs" and fields.get("teacher") and not fields.get("teacher_hash"):
        from node.teacher import teacher_hash_of

        fields["teacher_hash"] = teacher_hash_of(fields["teacher"])  # pin the teacher by its weights
    cfg = SubnetConfig.model_validate(fields)
    from protocol.model import subnet_model_config

    subnet_model_config(cfg)  # an unknown preset fails here, with the valid names
    write_documented(cfg, args.out)
    print(f"subnet config: {args.out} (netuid {cfg.netuid}, preset {cfg.preset}, dataset {cfg.dataset_name})")
    print(f"dataset_hash={cfg.dataset_hash}")
    if cfg.task == "outputs":
        print(f"teacher_hash={cfg.teacher_hash} (the model hash of {cfg.teacher})")
    print(f"config_hash={cfg.config_hash()}")
    print(f"every field is explained in the file under \"_doc\" and by `swarmtrain subnet show {args.out}`")
    return 0


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from node.subnet_file import describe_config, read_subnet_config

    cfg = read_subnet_config(args.config)
    table = Table(title=f"{args.config} · config_hash {cfg.config_hash()}")
    for col in ("field", "value", "meaning"):
        table.add_column(col)
    for item in describe_config(cfg):
        table.add_row(item["field"], repr(item["value"]), item["meaning"])
    Console(width=160).print(table)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    import asyncio

    from node.subnet_file import write_documented

    cfg, endpoint = asyncio.run(_fetch_config(args))
    write_documented(cfg, args.out)
    print(f"subnet config of validator uid {endpoint.uid} ({endpoint.url}): {args.out}")
    print(f"config_hash={cfg.config_hash()} (matches its commitment on chain)")
    return 0


async def _fetch_config(args: argparse.Namespace) -> tuple[SubnetConfig, ValidatorEndpoint]:
    from chain.client import Chain
    from node.fetch import PinnedReader, fetch_subnet_config
    from node.subnet_file import SubnetConfigError
    from node.validators import find_validators, serving_validators

    timeout = subtensor_of(args).timeout_s
    async with await Chain.connect(network_of(args), timeout=timeout) as chain:
        mg = await chain.metagraph(args.netuid)
    if args.validator_uid is None:
        found = serving_validators(mg)  # the lead first (protocol.lead)
    else:
        found = [v for v in find_validators(mg, require_permit=False) if v.uid == args.validator_uid]
    if not found:
        which = f"validator uid {args.validator_uid}" if args.validator_uid is not None else "no validator"
        raise SubnetConfigError(f"{which} has published an endpoint and commitment on netuid {args.netuid} "
                                "yet: start the validator first, or ask the subnet owner for subnet.json")
    async with PinnedReader(timeout=timeout) as reader:
        return await fetch_subnet_config(reader, found[0]), found[0]
