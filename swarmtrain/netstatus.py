"""What ``swarmtrain status`` shows beyond the metagraph: every validator's view, per miner.

Reads each validator's ``GET /status`` (HTTPS pinned to the fingerprint it committed on chain;
no wallet needed), then: per-miner scores as each validator sees them (last verdict, running
score, last submission), and whether every node holds the same model: validators by the hash
they report for their window, miners by the base model hash of their last submission as the
validators recorded it.

Example:
    >>> doc = asyncio.run(network_status("devnet", 1, timeout=10))
    >>> doc["agreement"]["all_agree"], [v["status"]["window"] for v in doc["validators"]]
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rich.console import Group
from rich.table import Table

from chain.types import Metagraph
from node.fetch import PinnedReader
from node.signed_http import NodeHttpError
from node.validators import ValidatorEndpoint, find_validators, serving_validators


async def read_validator(reader: PinnedReader, v: ValidatorEndpoint) -> dict[str, Any]:
    """One validator's ``/status`` (or the error that kept us from it)."""
    row: dict[str, Any] = {"uid": v.uid, "hotkey": v.hotkey, "url": v.url, "stake": v.stake,
                           "status": None, "error": None}
    try:
        code, body = await reader.get(v.url, "/status", pinned_fingerprint=v.fingerprint)
        if code == 200:
            row["status"] = json.loads(body)
        else:
            row["error"] = f"HTTP {code}"
    except (NodeHttpError, ValueError) as exc:
        row["error"] = str(exc)[:200]
    return row


async def validator_views(metagraph: Metagraph, *, timeout: float) -> list[dict[str, Any]]:
    """Every validator with an endpoint and commitment: the serving ones in ``protocol.lead``'s
    order (the lead first), then any other."""
    serving = serving_validators(metagraph)
    endpoints = serving + [v for v in find_validators(metagraph, require_permit=False) if v not in serving]
    async with PinnedReader(timeout=timeout) as reader:
        return list(await asyncio.gather(*(read_validator(reader, v) for v in endpoints)))


def agreement(views: list[dict[str, Any]]) -> dict[str, Any]:
    """Do the nodes hold one model? Validators are compared at the lead's window (one at
    another window is ``unknown``); miners by the verdict the lead recorded for their last
    submission's base model."""
    answered = [v for v in views if v["status"]]
    if not answered:
        return {"window": None, "model_hash": None, "validators": {}, "miners": {}, "all_agree": None}
    lead = answered[0]["status"]
    validators: dict[int, bool | None] = {}
    for v in answered:
        s = v["status"]
        validators[v["uid"]] = s["model_hash"] == lead["model_hash"] if s["window"] == lead["window"] else None
    miners = {int(m["uid"]): m["last_submission"]["hash_agrees"]
              for m in lead.get("miners", []) if m.get("last_submission")}
    verdicts = [*validators.values(), *miners.values()]
    return {"window": lead["window"], "model_hash": lead["model_hash"], "validators": validators,
            "miners": miners, "all_agree": all(x is True for x in verdicts) if verdicts else None}


def _mark(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "?"}[value]


def _fmt(value: Any, digits: int) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def validators_table(views: list[dict[str, Any]], agree: dict[str, Any]) -> Table:
    table = Table(title="validators (first: the lead)")
    for col in ("UID", "URL", "WINDOW", "BLOCK", "MODEL HASH", "AGREES", "VAL LOSS", "NOTE"):
        table.add_column(col)
    for v in views:
        s = v["status"] or {}
        table.add_row(str(v["uid"]), v["url"], str(s.get("window", "-")), str(s.get("block", "-")),
                      (s.get("model_hash") or "-")[:12], _mark(agree["validators"].get(v["uid"])),
                      _fmt(s.get("val_loss"), 4), v["error"] or ("lead" if s.get("lead") else ""))
    return table


def miners_table(doc: dict[str, Any]) -> Table:
    """One row per miner: each validator's last score and running score, the lead's record of
    its last submission, and its incentive and emission from the metagraph."""
    views = [v for v in doc["validators"] if v["status"]]
    per_validator = [{int(m["uid"]): m for m in v["status"].get("miners", [])} for v in views]
    validator_uids = {v["uid"] for v in doc["validators"]}
    table = Table(title="miners (scores as each validator sees them)")
    table.add_column("UID", justify="right")
    table.add_column("HOTKEY")
    for v in views:
        table.add_column(f"v{v['uid']} SCORE / RUNNING / REASON")
    for col in ("LAST SUBMISSION", "HASH AGREES", "INCENTIVE", "EMISSION"):
        table.add_column(col)
    for n in doc["neurons"]:
        uid = n["uid"]
        if uid in validator_uids:
            continue
        cells = []
        for rows in per_validator:
            m = rows.get(uid, {})
            verdict = m.get("verdict") or {}
            cells.append(f"{_fmt(verdict.get('score'), 3)} / {_fmt(m.get('ema'), 3)} / {verdict.get('reason', '-')}")
        last = (per_validator[0].get(uid, {}) if per_validator else {}).get("last_submission") or {}
        seen = f"w{last['window']} {last['outcome']}" if last else "-"
        table.add_row(str(uid), f"{n['hotkey'][:6]}…{n['hotkey'][-4:]}", *cells, seen,
                      _mark(doc["agreement"]["miners"].get(uid)), _fmt(n["incentive"], 4), _fmt(n["emission"], 6))
    return table


def agreement_line(agree: dict[str, Any]) -> str:
    if agree["all_agree"] is None:
        return "model hashes: no validator answered, or nothing to compare yet"
    nv, nm = len(agree["validators"]), len(agree["miners"])
    head = f"model hashes at window {agree['window']} ({(agree['model_hash'] or '')[:12]}…)"
    if agree["all_agree"]:
        return f"{head}: all {nv} validator(s) and {nm} miner(s) agree"
    odd = [f"validator {u}" for u, a in agree["validators"].items() if a is not True]
    odd += [f"miner {u}" for u, a in agree["miners"].items() if a is not True]
    return f"{head}: NOT all agree ({', '.join(odd)} differ or are at another window)"


def network_view(doc: dict[str, Any], metagraph_table: Table) -> Group:
    """Everything ``status`` prints (one renderable, for ``--watch``)."""
    return Group(metagraph_table, validators_table(doc["validators"], doc["agreement"]), miners_table(doc),
                 agreement_line(doc["agreement"]))
