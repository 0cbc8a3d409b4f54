"""`swarmtrain status`: a subnet's metagraph, every validator's view per miner, and whether
every node holds the same model; as tables (``--watch`` refreshes them like ``top``) or JSON.

    swarmtrain status --netuid 1 --subtensor.network devnet [--json] [--watch 5]

JSON shape: ``{"network", "netuid", "block", "hyperparameters": {...},
"neurons": [{"uid", "hotkey", "coldkey", "stake", "validator_permit", "incentive",
"dividends", "emission", "consensus", "last_update", "axon", "commitment"}, ...],
"validators": [{"uid", "hotkey", "url", "stake", "status": <its GET /status> | null, "error"}],
"agreement": {"window", "model_hash", "validators": {uid: bool|null}, "miners": {uid: bool|null},
"all_agree"}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from swarmtrain.commands._chainargs import (
    add_netuid_arg,
    add_network_args,
    guarded,
    network_of,
    subtensor_of,
)

NAME = "status"
HELP = "show a subnet: metagraph, per-miner scores from every validator, model hash agreement (--watch: live)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_netuid_arg(parser)
    add_network_args(parser)
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    parser.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                        help="redraw every SECONDS until Ctrl-C, like top")
    parser.add_argument("--count", type=int, default=None, help="with --watch: stop after this many refreshes")


def run(args: argparse.Namespace) -> int:
    if args.watch is not None:
        return guarded(lambda: asyncio.run(_watch(args)))
    return guarded(lambda: asyncio.run(_status(args)))


async def _document(args: argparse.Namespace) -> dict[str, Any]:
    from chain.client import Chain
    from swarmtrain.netstatus import agreement, validator_views

    async with await Chain.connect(network_of(args), timeout=subtensor_of(args).timeout_s) as chain:
        mg = await chain.metagraph(args.netuid)
        hp = await chain.hyperparameters(args.netuid)
    doc = status_document(network_of(args), mg, hp)
    doc["validators"] = await validator_views(mg, timeout=min(subtensor_of(args).timeout_s, 10.0))
    doc["agreement"] = agreement(doc["validators"])
    return doc


async def _status(args: argparse.Namespace) -> int:
    doc = await _document(args)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:

        from swarmtrain.netstatus import network_view

        _console().print(network_view(doc, metagraph_table(doc)))
    return 0


async def _watch(args: argparse.Namespace) -> int:
    """Redraw the tables every ``--watch`` seconds (``--count`` times, or until Ctrl-C)."""
    from rich.live import Live

    from chain.errors import ChainError
    from swarmtrain.netstatus import network_view

    refreshes = 0
    with Live(console=_console(), auto_refresh=False, screen=False) as live:
        while args.count is None or refreshes < args.count:
            try:
                doc = await _document(args)
                live.update(network_view(doc, metagraph_table(doc)), refresh=True)
            except ChainError as err:  # the chain hiccuped: say so and try again next time
                live.update(f"error: {err} (retrying in {args.watch:g}s)", refresh=True)
            refreshes += 1
            if args.count is None or refreshes < args.count:
                await asyncio.sleep(max(0.2, args.watch))
    return 0


def _console() -> Any:
    from rich.console import Console

    return Console(width=max(150, Console().width))


def status_document(network: str, mg: Any, hp: Any) -> dict[str, Any]:
    """The JSON document ``status --json`` prints (metagraph + hyperparameters)."""
    return {"network": network, **mg.to_dict(), "hyperparameters": hp.to_dict()}


def _short(key: str) -> str:
    return f"{key[:6]}…{key[-4:]}" if len(key) > 12 else key


def print_table(doc: dict[str, Any]) -> None:
    """Render the metagraph part of the status document as a rich table on stdout."""
    _console().print(metagraph_table(doc))


def metagraph_table(doc: dict[str, Any]) -> Any:
    """The metagraph as a rich table (uids, stake in TAO, permits, incentive, emission, axons)."""
    from rich.table import Table
    from rich.text import Text

    from node.logs import safe_text

    hp = doc["hyperparameters"]
    title = (
        f"netuid {doc['netuid']} on {doc['network']} · block {doc['block']} · "
        f"tempo {hp['tempo']} · burn τ{hp['burn']:.4f} · {len(doc['neurons'])} neurons"
    )
    table = Table(title=title)
    for column in (
        "UID",
        "HOTKEY",
        "COLDKEY",
        "STAKE τ",
        "VPERMIT",
        "INCENTIVE",
        "DIVIDENDS",
        "EMISSION",
        "AXON",
        "COMMITMENT",
    ):
        table.add_column(column, justify="right" if column in ("UID", "STAKE τ") else "left")
    for n in doc["neurons"]:
        table.add_row(
            str(n["uid"]),
            _short(n["hotkey"]),
            _short(n["coldkey"]),
            f"{n['stake']:.4f}",
            "yes" if n["validator_permit"] else "",
            f"{n['incentive']:.4f}",
            f"{n['dividends']:.4f}",
            f"{n['emission']:.6f}",
            Text(safe_text(n["axon"] or "-")),  # chain data, anyone's: no markup, no escapes
            Text(safe_text(n["commitment"] or "-")[:24]),
        )
    return table
