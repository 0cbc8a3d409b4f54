"""What an operator sees of a running validator: Prometheus metrics, recent windows, per-miner rows.

Fed by the validator as things happen (``on_window`` after each metrics line, ``on_outcome``
and ``on_received`` from intake, ``on_evaluated``, ``on_sent``); read by ``GET /metrics``,
``GET /status`` (``miner_rows``) and the dashboard. Nothing here changes what the validator
decides.

Metrics (prefix ``swarmtrain_validator_``): ``windows_closed_total``, ``window``, ``block``,
``submissions_total{outcome}`` (accepted or the refusal code), ``evaluation_seconds`` and
``window_close_seconds`` (histograms), ``validation_loss``, ``contributors``,
``miner_score{uid}`` (last window score), ``miner_ema{uid}`` (the moving average weights
come from), ``received_bytes_total`` (submission bodies), ``sent_bytes_total`` (aggregates
and checkpoints served), ``model_hash_age_seconds``.

Example:
    >>> t = ValidatorTelemetry()
    >>> t.on_window({"window": 3, "val_loss": 4.1, "scores": {"1": 0.2}, "ema": {"1": 0.1}, ...})
    >>> t.miner_rows(metagraph, model_hash="ab...", open_window=4)
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chain.types import Metagraph
from node.commitment import parse_commitment
from node.metrics import SECONDS_BUCKETS, HashAge
from protocol import criteria
from protocol.messages import Aggregate, Submission

if TYPE_CHECKING:
    from validator.evaluate import WindowEvaluation

KEEP_WINDOWS = 240  # windows the dashboard can chart
TAIL_BYTES = 1 << 20  # how much of metrics.jsonl a restart reads back


def tail_records(path: Path, limit: int = KEEP_WINDOWS) -> list[dict[str, Any]]:
    """The last ``limit`` complete JSON lines of a metrics file (reads at most ``TAIL_BYTES``)."""
    import json

    path = Path(path)
    if not path.exists():
        return []
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - TAIL_BYTES))
        lines = fh.read().splitlines()[1 if size > TAIL_BYTES else 0:]  # the first may be cut
    records = []
    for line in lines[-limit:]:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _verdict_record(v: criteria.Verdict) -> dict[str, object]:
    """What the metrics line keeps of a verdict: why it scored what it did, and the figures."""
    return {"reason": v.reason, "gain": round(v.gain, 6), "own_z": round(v.own_z, 3)}


def window_record(window: int, header: Aggregate, result: WindowEvaluation, submissions: list[int], *,
                  val_before: float, val_after: float, ema: dict[int, float], refusals: dict[str, int],
                  traffic: dict[str, int], block: int, seconds: float) -> dict[str, Any]:
    """One closed window's line of ``metrics.jsonl`` (JSON-ready: string uids, rounded figures)."""
    return {
        "window": window,
        "val_loss_before": round(val_before, 6),
        "val_loss": round(val_after, 6),
        "contributors": [c.uid for c in header.contributors],
        "submissions": submissions,
        "evaluated": sorted(result.evaluations),
        "copies": {str(k): v for k, v in result.copies.items()},
        "scores": {str(k): round(v, 6) for k, v in result.scores.items()},
        "verdicts": {str(k): _verdict_record(v) for k, v in result.verdicts.items()},
        "reference_norm": result.reference_norm,
        "measured_at_close": result.measured_at_close,
        "own_data_test": None if result.bar is None else {
            "informative": result.bar.informative, "z_top": round(result.bar.z_top, 3),
            "z_pass": round(result.bar.z_pass, 3)},
        "ema": {str(k): round(v, 6) for k, v in ema.items()},
        "model_hash": header.next_model_hash,
        "refusals": refusals,
        **traffic,
        "block": block,
        "seconds": round(seconds, 3),
    }


class ValidatorTelemetry:
    """Counters, gauges and recent records of one validator (its own registry)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.records: deque[dict[str, Any]] = deque(maxlen=KEEP_WINDOWS)
        self.submitted: dict[int, dict[str, Any]] = {}  # uid -> its last submission as seen by intake
        self.registry = CollectorRegistry()
        self._define()

    def _define(self) -> None:
        r, p = self.registry, "swarmtrain_validator_"
        self.windows_closed = Counter(p + "windows_closed", "windows closed (evaluated, aggregated, applied)", registry=r)
        self.window = Gauge(p + "window", "the window being collected", registry=r)
        self.block = Gauge(p + "block", "last chain block seen", registry=r)
        self.submissions = Counter(p + "submissions", "POST /submit answers by outcome (accepted or the "
                                   "refusal code)", ["outcome"], registry=r)
        self.evaluation_seconds = Histogram(p + "evaluation_seconds", "seconds evaluating one window's "
                                            "submissions", buckets=SECONDS_BUCKETS, registry=r)
        self.close_seconds = Histogram(p + "window_close_seconds", "seconds closing one window (evaluate, "
                                       "aggregate, apply, validate)", buckets=SECONDS_BUCKETS, registry=r)
        self.val_loss = Gauge(p + "validation_loss", "loss of θ_{w+1} on the fixed validation batch", registry=r)
        self.contributors = Gauge(p + "contributors", "uids aggregated in the last window", registry=r)
        self.score = Gauge(p + "miner_score", "a uid's score in the last window it was evaluated", ["uid"], registry=r)
        self.ema = Gauge(p + "miner_ema", "a uid's moving-average score (what weights follow)", ["uid"], registry=r)
        self.received = Counter(p + "received_bytes", "submission body bytes received", registry=r)
        self.sent = Counter(p + "sent_bytes", "aggregate and checkpoint bytes served", registry=r)
        self.sent_total = 0  # the same bytes, readable (metrics.jsonl's served_bytes, GET /status)
        self.sent_answers = 0
        self._traffic_mark = (0, 0)  # (served, uploaded) bytes at the last metrics line
        self.hash_age = HashAge(self.clock)
        age = Gauge(p + "model_hash_age_seconds", "seconds since the model hash last changed", registry=r)
        age.set_function(self.hash_age.age)

    # ---- feeding ------------------------------------------------------------------------------
    def seed(self, records: list[dict[str, Any]]) -> None:
        """Recent windows from before a restart (the dashboard's history; counters start at 0)."""
        for record in records:
            if "window" in record:
                self.records.append(record)
                self._gauges(record)

    def on_window(self, record: dict[str, Any]) -> None:
        """One closed window (the line just written to metrics.jsonl)."""
        record = {"ts": round(self.clock(), 3), **record}
        self.records.append(record)
        self.windows_closed.inc()
        if record.get("seconds") is not None:
            self.close_seconds.observe(float(record["seconds"]))
        self._gauges(record)

    def _gauges(self, record: dict[str, Any]) -> None:
        if record.get("val_loss") is not None:
            self.val_loss.set(float(record["val_loss"]))
        self.contributors.set(len(record.get("contributors") or []))
        for uid, value in (record.get("scores") or {}).items():
            self.score.labels(uid=str(uid)).set(float(value))
        for uid, value in (record.get("ema") or {}).items():
            self.ema.labels(uid=str(uid)).set(float(value))
        self.hash_age.update(str(record.get("model_hash") or ""))

    def on_progress(self, *, block: int, open_window: int, model_hash: str) -> None:
        self.block.set(block)
        self.window.set(open_window)
        self.hash_age.update(model_hash)

    def on_received(self, nbytes: int) -> None:
        self.received.inc(nbytes)

    def on_sent(self, nbytes: int) -> None:
        """One GET answer of an aggregate, checkpoint or manifest (what grows with the nodes that
        read from this validator; zero where the subnet stores them in S3)."""
        self.sent.inc(nbytes)
        self.sent_total += nbytes
        self.sent_answers += 1

    def traffic(self, uploaded_total: int) -> dict[str, int]:
        """Bytes served in GET answers, and uploaded to the bucket (``uploaded_total`` so far),
        since the last call: the ``served_bytes``/``uploaded_bytes`` of a metrics line."""
        served_before, uploaded_before = self._traffic_mark
        self._traffic_mark = (self.sent_total, uploaded_total)
        return {"served_bytes": self.sent_total - served_before, "uploaded_bytes": uploaded_total - uploaded_before}

    def on_evaluated(self, seconds: float) -> None:
        self.evaluation_seconds.observe(seconds)

    def on_outcome(self, header: Submission | None, outcome: str, expected_hash: str | None = None) -> None:
        """One answer to ``POST /submit``; ``header`` (a ``Submission``) only once the signer is known
        to hold the uid, ``expected_hash`` θ_w's hash when the submission is for the open window."""
        self.submissions.labels(outcome=outcome).inc()
        if header is None:
            return
        agrees = None if expected_hash is None else header.base_model_hash == expected_hash
        self.submitted[int(header.uid)] = {
            "window": int(header.window), "outcome": outcome, "base_model_hash": header.base_model_hash,
            "hash_agrees": agrees, "at": round(self.clock(), 3),
        }

    # ---- reading ------------------------------------------------------------------------------
    def last_verdicts(self) -> dict[int, dict[str, Any]]:
        """uid -> {window, score, reason, gain, own_z} of the last window that evaluated it."""
        out: dict[int, dict[str, Any]] = {}
        for record in self.records:
            scores = record.get("scores") or {}
            for uid, verdict in (record.get("verdicts") or {}).items():
                out[int(uid)] = {"window": record["window"], "score": scores.get(uid), **verdict}
        return out

    def hash_at(self, window: int, current_window: int, current_hash: str) -> str | None:
        """θ_window's hash as this validator had it (None when it is out of the recent records)."""
        if window == current_window:
            return current_hash
        for record in reversed(self.records):
            if int(record["window"]) == window - 1:
                return record.get("model_hash")
        return None

    def miner_rows(self, metagraph: Metagraph | None, *, model_hash: str, open_window: int,
                   ema: dict[int, float]) -> list[dict[str, Any]]:
        """One row per uid of the metagraph (and any uid scored or seen since): stake, incentive,
        emission, last verdict, moving average, last submission and whether its base model agreed."""
        verdicts = self.last_verdicts()
        chain = _chain_rows(metagraph)
        uids = sorted(set(chain) | set(verdicts) | set(self.submitted) | set(ema))
        rows = []
        for uid in uids:
            seen = self.submitted.get(uid)
            if seen is not None and seen["hash_agrees"] is None:
                ours = self.hash_at(seen["window"], open_window, model_hash)
                seen = {**seen, "hash_agrees": None if ours is None else seen["base_model_hash"] == ours}
            rows.append({
                "uid": uid, **chain.get(uid, {}),
                "verdict": verdicts.get(uid), "ema": ema.get(uid),
                "last_submission": seen,
            })
        return rows


def _chain_rows(metagraph: Metagraph | None) -> dict[int, dict[str, Any]]:
    """uid -> hotkey, stake, permit, incentive, dividends, emission, served endpoint."""
    if metagraph is None:
        return {}
    rows: dict[int, dict[str, Any]] = {}
    commitments = metagraph.commitments
    for i, uid in enumerate(metagraph.uids):
        rows[int(uid)] = {
            "hotkey": metagraph.hotkeys[i], "stake": float(metagraph.stake[i]),
            "validator_permit": bool(metagraph.validator_permit[i]), "incentive": float(metagraph.incentive[i]),
            "dividends": float(metagraph.dividends[i]), "emission": float(metagraph.emission[i]),
            "axon": metagraph.axons[i],
            "validator": parse_commitment(commitments.get(metagraph.hotkeys[i])) is not None,
        }
    return rows
