"""Prometheus metrics: the miner's (from its per-window records) and the HTTP plumbing both nodes use.

Each node keeps its own ``CollectorRegistry`` (never the process-global one), so several
nodes in one process (tests) do not share counters. The validator serves its registry at
``GET /metrics`` of its HTTPS API (``validator.telemetry``); a miner, which opens no port
for the network, serves it on a small plain-HTTP server bound to 127.0.0.1 by default
(``MetricsServer``).

Miner metrics (all prefixed ``swarmtrain_miner_``): ``windows_total{result}``
(trained / skipped), ``submissions_total{outcome}`` (accepted or the refusal code, one per
validator answer), ``window`` (last finished window), ``loss`` (last inner-step loss),
``train_seconds`` / ``upload_seconds`` / ``sync_seconds`` (histograms per window),
``sent_bytes_total`` / ``received_bytes_total`` (HTTP bodies to and from validators),
``model_hash_age_seconds`` (since the model last changed: a stuck miner grows it).

Example:
    >>> telemetry = MinerTelemetry()
    >>> writer = ObservedMetricsWriter(state / "metrics.jsonl", telemetry.on_record)
    >>> server = await MetricsServer.start(telemetry.registry, "127.0.0.1", 9101)
    >>> await server.stop()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from node.logs import MetricsWriter, progress_line

if TYPE_CHECKING:
    from node.signed_http import SignedClient

log = logging.getLogger("swarmtrain.metrics")

# The text exposition format every Prometheus server reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
METRICS_PATH = "/metrics"


class MetricsPortError(OSError):
    """The metrics port cannot be bound (in use, or not allowed)."""


def exposition(registry: CollectorRegistry) -> web.Response:
    """A ``/metrics`` answer: the registry in the Prometheus text format."""
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})


class HashAge:
    """Seconds since a model hash last changed (a gauge callback)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.hash = ""
        self.since = clock()

    def update(self, model_hash: str) -> None:
        if model_hash and model_hash != self.hash:
            self.hash, self.since = model_hash, self.clock()

    def age(self) -> float:
        return max(0.0, self.clock() - self.since)


class ObservedMetricsWriter(MetricsWriter):
    """A ``MetricsWriter`` that also hands every record to ``observe`` (after it is on disk)."""

    def __init__(self, path: Path, observe: Callable[[dict[str, Any]], None], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.observe = observe

    def write(self, record: dict[str, Any]) -> None:
        super().write(record)
        try:
            self.observe(record)
        except Exception:  # noqa: BLE001 - metrics must never stop a node
            log.exception("updating metrics from a record failed")


class MinerTelemetry:
    """The miner's Prometheus registry, fed from its per-window metrics records."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        r, p = self.registry, "swarmtrain_miner_"
        self.windows = Counter(p + "windows", "windows finished, by result (trained or skipped)", ["result"], registry=r)
        self.submissions = Counter(p + "submissions", "validator answers to submissions, by outcome "
                                   "(accepted or the refusal code)", ["outcome"], registry=r)
        self.window = Gauge(p + "window", "last window the miner finished", registry=r)
        self.loss = Gauge(p + "loss", "loss of the last inner step", registry=r)
        self.seconds = {name: Histogram(p + f"{name}_seconds", f"seconds spent in '{name}' per window",
                                        buckets=SECONDS_BUCKETS, registry=r) for name in ("train", "upload", "sync")}
        self.sent = Counter(p + "sent_bytes", "HTTP body bytes sent to validators", registry=r)
        self.received = Counter(p + "received_bytes", "HTTP body bytes received from validators", registry=r)
        self.hash_age = HashAge(clock)
        age = Gauge(p + "model_hash_age_seconds", "seconds since the model hash last changed", registry=r)
        age.set_function(self.hash_age.age)

    def on_record(self, record: dict[str, Any]) -> None:
        """Update from one ``WindowReport.record()`` (miner/service.py)."""
        if record.get("event") != "window":
            return
        self.windows.labels(result="trained" if record.get("trained") else "skipped").inc()
        self.window.set(int(record.get("window", 0)))
        if record.get("loss_last") is not None:
            self.loss.set(float(record["loss_last"]))
        for _ in record.get("accepted") or []:
            self.submissions.labels(outcome="accepted").inc()
        for refusal in record.get("refused") or []:
            self.submissions.labels(outcome=str(refusal.get("code") or "unknown")).inc()
        timings = record.get("timings") or {}
        for name, histogram in self.seconds.items():
            if name in timings:
                histogram.observe(float(timings[name]))
        self.hash_age.update(str(record.get("model_hash") or ""))


class CountingClient:
    """Wraps a ``SignedClient``: the same ``post``/``get``/``close``, counting body bytes."""

    def __init__(self, inner: SignedClient, telemetry: MinerTelemetry) -> None:
        self.inner = inner
        self.telemetry = telemetry

    async def post(self, url: str, path: str, body: bytes, *, receiver_hotkey: str,
                   pinned_fingerprint: str) -> tuple[int, bytes]:
        self.telemetry.sent.inc(len(body))
        status, data = await self.inner.post(url, path, body, receiver_hotkey=receiver_hotkey,
                                             pinned_fingerprint=pinned_fingerprint)
        self.telemetry.received.inc(len(data))
        return status, data

    async def get(self, url: str, path: str, *, receiver_hotkey: str | None,
                  pinned_fingerprint: str, **limits: Any) -> tuple[int, bytes]:
        status, data = await self.inner.get(url, path, receiver_hotkey=receiver_hotkey,
                                            pinned_fingerprint=pinned_fingerprint, **limits)
        self.telemetry.received.inc(len(data))
        return status, data

    async def close(self) -> None:
        await self.inner.close()


class MetricsServer:
    """A plain-HTTP ``GET /metrics`` on ``host:port`` (the miner's; it serves nothing else)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self.runner, self.host, self.port = runner, host, port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{METRICS_PATH}"

    @classmethod
    async def start(cls, registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
        """Bind and serve; ``MetricsPortError`` names the setting to change when the port is taken."""

        async def metrics(request: web.Request) -> web.Response:
            return exposition(registry)

        app = web.Application()
        app.router.add_get(METRICS_PATH, metrics)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsPortError(
                f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}): pass another "
                "--metrics-port (0 picks a free one) or --no-metrics"
            ) from exc
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info(progress_line("Prometheus metrics", url=f"http://{host}:{bound}{METRICS_PATH}"))
        return cls(runner, host, bound)

    async def stop(self) -> None:
        await self.runner.cleanup()
