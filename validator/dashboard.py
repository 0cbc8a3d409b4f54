"""The operator routes of the validator's HTTPS API: dashboard, its data, Prometheus, subnet config.

``GET /dashboard`` is one self-contained HTML page (``validator/static/dashboard.html``: no
external assets, works offline) that polls ``GET /dashboard/data`` every few seconds.
``GET /metrics`` is the Prometheus text format (``validator.telemetry``). ``GET
/subnet-config`` is the config this validator runs (its hash is in its commitment), so a node
can compare it field by field (``node.subnet_check``, through ``node.fetch``).

Example:
    >>> add_operator_routes(app, validator)     # validator: an ``OperatorSource``
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from statistics import fmean
from typing import Any, Protocol

from aiohttp import web

from chain.types import Metagraph
from node.fetch import SUBNET_CONFIG_PATH
from node.metrics import METRICS_PATH, exposition
from protocol.subnet import SubnetConfig
from validator.peers import PeerWatch
from validator.telemetry import ValidatorTelemetry

DASHBOARD_PATH = "/dashboard"
DATA_PATH = "/dashboard/data"
CHART_WINDOWS = 120  # windows sent to the page


class OperatorSource(Protocol):
    """What the routes read from the validator."""

    cfg: SubnetConfig
    telemetry: ValidatorTelemetry
    peers: PeerWatch
    metagraph: Metagraph | None

    def status(self) -> dict[str, Any]: ...


@lru_cache(maxsize=1)
def dashboard_html() -> bytes:
    return resources.files("validator").joinpath("static/dashboard.html").read_bytes()


def window_row(record: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one metrics line."""
    keys = ("window", "val_loss", "val_loss_before", "contributors", "submissions", "evaluated", "scores",
            "verdicts", "copies", "seconds", "block", "ts", "model_hash", "refusals")
    return {k: record.get(k) for k in keys}


def timing(records: list[dict[str, Any]], cfg: SubnetConfig, block_time: float | None) -> dict[str, Any]:
    """Window length on chain and as measured (between closes), and time spent closing one."""
    stamps = [r["ts"] for r in records if r.get("ts") is not None]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b > a]
    closes = [float(r["seconds"]) for r in records if r.get("seconds") is not None]
    return {
        "blocks_per_window": cfg.blocks_per_window, "block_time": block_time,
        "window_seconds_chain": None if not block_time else cfg.blocks_per_window * block_time,
        "window_seconds_measured": round(fmean(gaps[-20:]), 3) if gaps else None,
        "close_seconds_mean": round(fmean(closes[-20:]), 3) if closes else None,
        "close_seconds_last": closes[-1] if closes else None,
    }


def peer_rows(src: OperatorSource, status: dict[str, Any]) -> list[dict[str, Any]]:
    """Every validator (this one first) with its window, model hash and whether it agrees with ours."""
    own = {"uid": status.get("uid"), "hotkey": status.get("hotkey"), "self": True, "window": status["window"],
           "model_hash": status["model_hash"], "agrees": True, "error": None}
    rows = [own]
    for peer in src.peers.snapshot():
        ours = None if peer["window"] is None else src.telemetry.hash_at(
            int(peer["window"]), status["window"], status["model_hash"])
        agrees = None if ours is None or peer["model_hash"] is None else peer["model_hash"] == ours
        rows.append({**peer, "self": False, "agrees": agrees})
    return rows


def dashboard_data(src: OperatorSource) -> dict[str, Any]:
    """The JSON the page renders: status, windows, miners, validators, refusals, timing."""
    status = src.status()
    records = list(src.telemetry.records)
    return {
        "status": status,
        "netuid": src.cfg.netuid,
        "windows": [window_row(r) for r in records[-CHART_WINDOWS:]],
        "miners": status.get("miners", []),
        "validators": peer_rows(src, status),
        "refusals": status.get("refusals", {}),
        "timing": timing(records, src.cfg, status.get("block_time")),
    }


def add_operator_routes(app: web.Application, src: OperatorSource) -> None:
    """Register the dashboard, its data, ``/metrics`` and ``/subnet-config`` on the HTTPS app."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=dashboard_html(), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def data(request: web.Request) -> web.Response:
        src.peers.poke(src.metagraph)
        return web.json_response(text=json.dumps(dashboard_data(src), default=str),
                                 headers={"Cache-Control": "no-store"})

    async def metrics(request: web.Request) -> web.Response:
        return exposition(src.telemetry.registry)

    async def subnet_config(request: web.Request) -> web.Response:
        return web.json_response(text=json.dumps(src.cfg.model_dump(), sort_keys=True))

    app.router.add_get(DASHBOARD_PATH, page)
    app.router.add_get("/", page)
    app.router.add_get(DATA_PATH, data)
    app.router.add_get(METRICS_PATH, metrics)
    app.router.add_get(SUBNET_CONFIG_PATH, subnet_config)
