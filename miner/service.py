"""The miner's main loop, one window at a time, as a list of named steps.

    sync to θ_w → fetch the window's shards → train H inner steps (while the next window's
    shards are fetched) → compress with error feedback → submit
    → wait for window w+1 → fetch Aggregate(w), apply, check hash → checkpoint → metrics

The miner opens no port: it only makes outbound HTTPS requests to validators.
Chain, wallet, data, trainer, state store and HTTP client are injected, so tests
swap any of them; a faulty miner is a subclass overriding ``encode_update``.

Example:
    >>> miner = Miner(chain=chain, wallet=wallet, cfg=cfg, dataset=ds, trainer=trainer,
    ...               store=MinerStateStore(state_dir), client=SignedClient(wallet),
    ...               metrics=MetricsWriter(state_dir / "metrics.jsonl"))
    >>> await miner.run(max_windows=3)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from torch import Tensor

from chain.errors import ChainError
from chain.types import Metagraph
from chain.wallets import Wallet
from miner.settings import MinerOptions
from miner.state import MinerState, MinerStateStore
from miner.submit import Poster, SubmitOutcome, Submitter, build_submission
from miner.sync import ChainClock, SyncError, WindowClock, catch_up
from miner.trainer import InnerTrainer, TrainResult, split_batches
from node.fetch import AggregateNotReady, FetchError, Getter, Links, ValidatorLink
from node.logs import MetricsWriter, progress_line
from node.model_state import ModelState
from node.shard_sources import ShardFetchError
from node.signed_http import NodeHttpError
from node.subnet_check import check_against
from node.validators import ValidatorEndpoint, lead_validator, serving_validators
from protocol import codec
from protocol.data import Dataset
from protocol.retry import TRANSIENT_BACKOFF, Backoff, retry
from protocol.subnet import SubnetConfig
from protocol.windows import assigned_samples

log = logging.getLogger("swarmtrain.miner")

T = TypeVar("T")

# Errors after which the miner retries the window instead of exiting.
TRANSIENT: tuple[type[BaseException], ...] = (ChainError, FetchError, NodeHttpError, ShardFetchError)


class MinerChain(ChainClock, Protocol):
    """The part of ``chain.client.Chain`` the miner uses."""

    async def metagraph(self, netuid: int) -> Metagraph: ...


class HttpClient(Getter, Poster, Protocol):
    """The part of ``node.signed_http.SignedClient`` the miner uses: reads and submissions."""


class MinerError(RuntimeError):
    """The miner cannot go on (not registered, no validator, wrong data)."""


@dataclass
class WindowReport:
    """What happened in one window; one metrics line."""

    window: int
    uid: int
    base_model_hash: str
    trained: bool = False
    submitted: bool = False
    losses: list[float] = field(default_factory=list)
    payload_bytes: int = 0
    outcomes: list[SubmitOutcome] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    model_hash: str = ""  # θ_{w+1}, after applying Aggregate(w)
    shards_fetched: list[str] = field(default_factory=list)  # shard files this window waited for
    details: dict[str, Any] = field(default_factory=dict)  # task-specific figures (outputs mode: samples, tokens/s)

    def record(self) -> dict[str, Any]:
        return {
            "event": "window",
            "window": self.window,
            "uid": self.uid,
            "base_model_hash": self.base_model_hash,
            "model_hash": self.model_hash,
            "trained": self.trained,
            "submitted": self.submitted,
            "loss_first": self.losses[0] if self.losses else None,
            "loss_last": self.losses[-1] if self.losses else None,
            "payload_bytes": self.payload_bytes,
            "shards_fetched": self.shards_fetched,
            "accepted": [o.validator_uid for o in self.outcomes if o.accepted],
            "refused": [
                {"validator": o.validator_uid, "status": o.status, "code": o.code, "reason": o.reason}
                for o in self.outcomes
                if not o.accepted
            ],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            **self.details,
        }


class Miner:
    """A miner node: trains on its assigned data each window and submits Δ.

    Example:
        >>> await Miner(chain=..., wallet=..., cfg=..., dataset=..., trainer=...,
        ...             store=..., client=..., metrics=...).run()
    """

    def __init__(
        self,
        *,
        chain: MinerChain,
        wallet: Wallet,
        cfg: SubnetConfig,
        dataset: Dataset,
        trainer: InnerTrainer,
        store: MinerStateStore,
        client: HttpClient,
        metrics: MetricsWriter,
        options: MinerOptions | None = None,
    ) -> None:
        self.chain = chain
        self.hotkey: str = wallet.hotkey.ss58_address
        self.cfg = cfg
        self.dataset = dataset
        self.trainer = trainer
        self.store = store
        self.client = client
        self.metrics = metrics
        self.options = options or MinerOptions()
        self.clock = WindowClock(chain, cfg.blocks_per_window)
        self.submitter = Submitter(client)
        self.codec_cfg = cfg.codec_config()
        self.error_feedback = codec.ErrorFeedback(cfg.error_feedback_beta)
        self.model: ModelState = ModelState.initial(cfg)
        self.polling = Backoff.every(self.options.poll_interval_s)  # waiting for a validator / aggregate
        self.uid = -1
        self.metagraph: Metagraph | None = None
        self._prefetch: asyncio.Task[list[str]] | None = None  # the next window's shards
        self._checked_config: tuple[str, str] | None = None  # (lead hotkey, its config hash) checked
        # where the lead's aggregates and checkpoints are read (HTTPS, or its bucket for storage = "s3")
        self.links = Links(client, cfg, store_timeout_s=min(60.0, self.options.sync_timeout_s))

    # ---- start-up -------------------------------------------------------------------
    def restore(self) -> None:
        """Load the local checkpoint (model, inner optimizer, error feedback) if any."""
        state = self.store.load(self.cfg)
        if state is None:
            log.info(progress_line("no local state: starting from θ_0", model=self.model.hash()[:12]))
            return
        self.model = state.model
        if state.inner_optimizer:
            self.trainer.load_optimizer_state(state.inner_optimizer)
        if state.error_feedback:
            self.error_feedback.load_state_dict(state.error_feedback)
        log.info(progress_line("restored local state", w=self.model.window, model=self.model.hash()[:12]))

    async def refresh_metagraph(self) -> Metagraph:
        self.metagraph = graph = await self.chain.metagraph(self.cfg.netuid)
        uid = graph.uid_of(self.hotkey)
        if uid is None:
            raise MinerError(
                f"hotkey {self.hotkey} is not registered on netuid {self.cfg.netuid}: register it first "
                f"(`swarmtrain register --netuid {self.cfg.netuid}` with this miner's --wallet.name/--wallet.hotkey "
                "and --subtensor.network), then start the miner again"
            )
        if int(uid) != self.uid:
            log.info(progress_line("registered", uid=int(uid), hotkey=self.hotkey, netuid=self.cfg.netuid))
        self.uid = int(uid)
        return graph

    def validators(self) -> list[ValidatorEndpoint]:
        """The validators to submit to (``protocol.lead``'s serving set); none before the metagraph is read."""
        return [] if self.metagraph is None else serving_validators(self.metagraph)

    async def lead_link(self) -> ValidatorLink:
        """Link to the lead validator, waiting for one to appear on chain."""

        async def attempt() -> ValidatorLink:
            lead = lead_validator(await self.refresh_metagraph())
            if lead is None:
                raise SyncError("no validator has published an endpoint yet")
            await self.check_config(lead)
            return self.links.to(lead)

        return await retry(attempt, timeout=self.options.sync_timeout_s, backoff=self.polling, retry_on=(SyncError,))

    async def check_config(self, lead: ValidatorEndpoint) -> None:
        """Stop (``SubnetConfigMismatch``, naming the fields) when the lead runs another subnet
        config: every submission would be refused, or the model would never sync."""
        key = (lead.hotkey, lead.config_hash)
        if key != self._checked_config:
            await check_against(self.client, lead, self.cfg)
            self._checked_config = key

    # ---- the loop ---------------------------------------------------------------------
    async def run(self, max_windows: int | None = None) -> None:
        """Mine until cancelled (or ``max_windows`` windows are done)."""
        self.restore()
        done = failures = 0
        try:
            while max_windows is None or done < max_windows:
                try:
                    await self.one_window()
                except TRANSIENT as exc:
                    # The chain, a validator or the data source hiccuped: the next window starts clean.
                    failures += 1
                    if failures > self.options.max_consecutive_failures:
                        raise
                    log.warning(progress_line("window failed, retrying", error=type(exc).__name__, reason=exc))
                    await asyncio.sleep(TRANSIENT_BACKOFF.delay(failures))
                    continue
                failures = 0
                done += 1
        finally:
            await self.stop_prefetch()
            await self.links.close()

    async def one_window(self) -> None:
        window = await self.clock.window()
        await self.sync_to(window)
        report = await self.work_window(window)
        await self.finish_window(report)

    async def sync_to(self, window: int) -> None:
        """Step 1: hold θ_window (catch up from the lead validator when behind)."""
        link = await self.lead_link()
        if self.model.window >= window:
            return
        started = time.monotonic()
        self.model = await retry(
            lambda: catch_up(self.model, link, window), timeout=self.options.sync_timeout_s,
            backoff=self.polling, retry_on=(AggregateNotReady, NodeHttpError),
        )
        log.info(progress_line("synced", window=window, model=self.model.hash()[:12], s=time.monotonic() - started))

    async def work_window(self, window: int) -> WindowReport:
        """Steps 2–4: train, compress, submit (skipped when θ_window is not what we hold)."""
        report = WindowReport(window=window, uid=self.uid, base_model_hash=self.model.hash())
        if self.model.window != window:
            log.warning(progress_line("not training this window: model behind", w=window, holding=self.model.window))
            return report
        indices = self.assigned_indices(window)
        await self.fetch_data(indices, report)
        self.start_prefetch(window + 1)
        payload, delivered = await self.make_payload(window, indices, report)
        report.payload_bytes = len(payload)
        if await self.clock.window() != window:
            log.warning(progress_line("window ended during training: late submission skipped", w=window))
            return report
        await self.submit(report, delivered, payload)
        return report

    async def make_payload(self, window: int, indices: list[int], report: WindowReport) -> tuple[bytes, list[int]]:
        """The window's work: train and compress (returns the payload and the samples it covers).
        Outputs-mode miners override it (``miner.teacher.OutputsMiner``)."""
        result = await self.train(window, indices, report)
        payload = self.timed(report, "compress", lambda: self.encode_update(result.delta))
        return payload, indices

    async def finish_window(self, report: WindowReport) -> None:
        """Steps 5–8: wait for the next window, apply Aggregate(w), checkpoint, metrics."""
        w = report.window
        started = time.monotonic()
        await self.clock.wait_for_window(w + 1, timeout=self.options.sync_timeout_s)
        report.timings["wait"] = time.monotonic() - started
        started = time.monotonic()
        await self.sync_to(w + 1)
        report.timings["sync"] = time.monotonic() - started
        self.timed(report, "checkpoint", self.checkpoint)
        report.model_hash = self.model.hash()
        self.metrics.write(report.record())
        log.info(progress_line("window", w=w, applied=report.model_hash[:12], window_s=sum(report.timings.values())))

    # ---- the steps ------------------------------------------------------------------
    def assigned_indices(self, window: int) -> list[int]:
        population = self.dataset.num_samples(self.cfg.seq_len)
        return assigned_samples(self.cfg.seed_bytes, window, self.uid, self.cfg.samples_per_window, population)

    async def fetch_data(self, indices: list[int], report: WindowReport) -> None:
        """Wait for the shards this window's samples lie in (usually prefetched already)."""
        started = time.monotonic()
        if self._prefetch is not None:
            pending, self._prefetch = self._prefetch, None
            try:
                await pending
            except ShardFetchError as exc:  # fetched again below; a lasting failure raises there
                log.warning(progress_line("prefetching shards failed", reason=exc))
        report.shards_fetched = await asyncio.to_thread(self.dataset.prefetch, indices, self.cfg.seq_len)
        report.timings["data"] = time.monotonic() - started
        if report.shards_fetched:
            log.info(progress_line("data", w=report.window, shards=len(report.shards_fetched), s=report.timings["data"]))

    async def stop_prefetch(self) -> None:
        """Let a running prefetch finish (its thread cannot be interrupted) and drop its result."""
        pending, self._prefetch = self._prefetch, None
        if pending is not None:
            try:
                await pending
            except Exception as exc:  # noqa: BLE001 - nothing needs those shards any more
                log.debug(progress_line("prefetch ended", reason=exc))

    def start_prefetch(self, window: int) -> None:
        """Fetch ``window``'s shards in a thread while this window trains."""
        indices = self.assigned_indices(window)
        if self.dataset.shards_for(indices, self.cfg.seq_len):
            self._prefetch = asyncio.create_task(asyncio.to_thread(self.dataset.prefetch, indices, self.cfg.seq_len))

    async def train(self, window: int, indices: list[int], report: WindowReport) -> TrainResult:
        samples = self.dataset.batch(indices, self.cfg.seq_len)  # (N, T+1)
        batches = split_batches(samples, self.cfg.batch_size)
        base = self.model.params()

        def on_step(i: int, n: int, loss: float) -> None:
            if i == 1 or i == n or i % self.options.log_every_steps == 0:
                log.info(progress_line("train", w=window, step=f"{i}/{n}", loss=loss))

        # Off the event loop so chain and HTTP timers keep running during compute.
        result = await asyncio.to_thread(self.trainer.train, base, batches, on_step)
        report.trained = True
        report.losses = result.losses
        report.timings["train"] = result.seconds
        return result

    def encode_update(self, delta: dict[str, Tensor]) -> bytes:
        """Error feedback + codec: the bytes a validator will decode. Faulty miners override this."""
        update = self.error_feedback.step(delta, self.codec_cfg)
        return codec.encode(update, self.codec_cfg)

    async def submit(self, report: WindowReport, indices: list[int], payload: bytes) -> None:
        body = build_submission(
            self.cfg, window=report.window, uid=self.uid, hotkey=self.hotkey,
            base_model_hash=report.base_model_hash, indices=indices, payload=payload,
        )
        started = time.monotonic()
        report.submitted = True
        report.outcomes = await self.submitter.submit_all(
            self.validators(), body, deadline_s=self.options.submit_deadline_s
        )
        report.timings["upload"] = time.monotonic() - started
        for o in report.outcomes:
            if o.accepted:
                log.info(progress_line("submitted", w=report.window, validator=o.validator_uid,
                                       bytes=len(body), s=o.seconds))
            else:
                log.warning(progress_line("refused", w=report.window, validator=o.validator_uid, status=o.status,
                                          code=o.code, reason=o.reason))

    def checkpoint(self) -> None:
        self.store.save(MinerState(
            model=self.model,
            inner_optimizer=self.trainer.optimizer_state(),
            error_feedback=self.error_feedback.state_dict(),
        ))

    @staticmethod
    def timed(report: WindowReport, name: str, fn: Callable[[], T]) -> T:
        started = time.monotonic()
        out = fn()
        report.timings[name] = time.monotonic() - started
        return out
