"""`swarmtrain status`: a subnet's metagraph as a table, or as JSON with ``--json``.

    swarmtrain status --netuid 1 --subtensor.network devnet --json

JSON shape: ``{"network", "netuid", "block", "hyperparameters": {...},
"neurons": [{"uid", "hotkey", "coldkey", "stake", "validator_permit", "incentive",
"dividends", "emission", "consensus", "last_update", "axon", "commitment"}, ...]}``.
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
HELP = "show a subnet's metagraph (uids, stake, permits, incentive, axons)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_netuid_arg(parser)
    add_network_args(parser)
    parser.add_argument("--json", action="store_true", help="print the metagraph as JSON")


def run(args: argparse.Namespace) -> int:
    return guarded(lambda: asyncio.run(_status(args)))


async def _status(args: argparse.Namespace) -> int:
    from chain.client import Chain

    async with await Chain.connect(network_of(args), timeout=subtensor_of(args).timeout_s) as chain:
        mg = await chain.metagraph(args.netuid)
        hp = await chain.hyperparameters(args.netuid)
    doc = status_document(network_of(args), mg, hp)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)
    return 0


def status_document(network: str, mg: Any, hp: Any) -> dict[str, Any]:
    """The JSON document ``status --json`` prints (metagraph + hyperparameters)."""
    return {"network": network, **mg.to_dict(), "hyperparameters": hp.to_dict()}


def _short(key: str) -> str:
    return f"{key[:6]}…{key[-4:]}" if len(key) > 12 else key


def print_table(doc: dict[str, Any]) -> None:
    """Render the status document as a rich table on stdout."""
    from rich.console import Console
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
        "STAKE",
        "VPERMIT",
        "INCENTIVE",
        "DIVIDENDS",
        "EMISSION",
        "AXON",
        "COMMITMENT",
    ):
        table.add_column(column, justify="right" if column in ("UID", "STAKE") else "left")
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
    Console(width=max(150, Console().width)).print(table)
