"""The validator's main loop: a list of named steps, decisions in small predicates.

Each tick: sync the block → close every finished window (evaluate, score, aggregate,
publish, apply, checkpoint every K, write a metrics line) → set weights once per tempo.
The HTTPS server (intake and GETs) runs alongside on the same event loop; heavy work
(decoding, evaluation) runs in a worker thread so requests keep flowing.

Example:
    >>> v = Validator(chain, wallet, cfg, settings, dataset)
    >>> await v.start()
    >>> try:
    ...     await v.run(stop=asyncio.Event())
    ... finally:
    ...     await v.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from chain.errors import ChainConnectionError, ChainError, ChainTimeoutError
from chain.http_server import ServerLimits
from chain.types import Metagraph, SubnetHyperparams
from chain.wallets import Wallet, hotkey_address
from node.commitment import ValidatorCommitment
from node.fetch import Links
from node.logs import progress_line
from node.shard_sources import ShardFetchError
from node.signed_http import SignedClient
from node.subnet_check import check_against
from node.validators import ValidatorEndpoint, lead_validator
from protocol import criteria
from protocol.data import Dataset
from protocol.distill import criteria_hash_of
from protocol.files import StateWriteError
from protocol.messages import Aggregate, pack_envelope, unpack_envelope
from protocol.retry import Outage, wait_out
from protocol.subnet import SubnetConfig
from protocol.windows import window_of
from validator.aggregation import build_aggregate
from validator.app import HttpsServer, build_app
from validator.batched_eval import BatchedEvaluator, make_evaluator
from validator.dashboard import add_operator_routes
from validator.evaluate import WindowEvaluation, validation_indices, validation_loss
from validator.follow import LeadFollower
from validator.intake import Intake, IntakeView
from validator.mirror import make_mirror
from validator.peers import PeerWatch
from validator.settings import ValidatorSettings
from validator.state import ValidatorState
from validator.store import SubmissionJournal, SubmissionStore
from validator.telemetry import ValidatorTelemetry, tail_records, window_record
from validator.verify_outputs import OutputsEvaluation, OutputsTask
from validator.weights import has_no_stake, permit_hint, set_weights_once

if TYPE_CHECKING:
    from node.teacher import Teacher

log = logging.getLogger("swarmtrain.validator")

T = TypeVar("T")

SUBMISSIONS_DIR = "submissions"  # <state>/submissions/<window>/<uid>.bin (validator.store)
FOLLOWER_POLL_S = 0.25  # tick period while a follower waits for the lead's aggregate
CHAIN_OUTAGE = (ChainConnectionError, ChainTimeoutError)  # waited out at start-up, however long


class ChainLike(Protocol):
    """The part of ``chain.client.Chain`` the validator uses."""

    async def block(self) -> int: ...
    async def metagraph(self, netuid: int) -> Metagraph: ...
    async def hyperparameters(self, netuid: int) -> SubnetHyperparams: ...
    async def serve(self, wallet: Wallet, netuid: int, ip: str, port: int) -> None: ...
    async def commit(self, wallet: Wallet, netuid: int, data: str) -> None: ...
    async def set_weights(self, wallet: Wallet, netuid: int, weights: dict[int, float]) -> None: ...


# ---- decisions ----------------------------------------------------------------------------


def should_close_window(model_window: int, chain_window: int) -> bool:
    """Window ``model_window`` is over once the chain has moved past it."""
    return chain_window > model_window


def should_set_weights(block: int, last_attempt_block: int | None, tempo: int) -> bool:
    """Once per tempo (the first time as soon as there is something to set)."""
    return last_attempt_block is None or block - last_attempt_block >= max(tempo, 1)


def should_checkpoint(window: int, every: int) -> bool:
    """θ_window is checkpointed every ``every`` windows."""
    return window % every == 0


class Validator:
    """One validator node: state, HTTPS API, and the window loop."""

    def __init__(
        self, chain: ChainLike, wallet: Wallet, cfg: SubnetConfig, settings: ValidatorSettings,
        dataset: Dataset, *, params: criteria.CriteriaParams = criteria.DEFAULT_PARAMS,
        hotkey: str | None = None, clock: Callable[[], float] = time.time, teacher: Teacher | None = None,
    ) -> None:
        self.chain, self.wallet, self.cfg, self.settings = chain, wallet, cfg, settings
        self.dataset, self.params, self.clock = dataset, params, clock
        self.hotkey = hotkey or hotkey_address(wallet)
        self.state = ValidatorState.open(settings, cfg, params)
        self.telemetry = ValidatorTelemetry()
        seen = tail_records(self.state.metrics.path)
        self.telemetry.seed(seen)
        # The last window with a metrics line: closing it again after a crash adds no second line.
        self.metrics_window = max((int(r["window"]) for r in seen if "window" in r), default=-1)
        self.peers = PeerWatch(self.hotkey, interval_s=settings.peer_status_interval_s,
                               timeout_s=settings.peer_status_timeout_s)
        self.view = IntakeView()
        self.subs = SubmissionStore(
            max_per_window=settings.max_submissions_per_window,
            journal=SubmissionJournal(self.state.root / SUBMISSIONS_DIR),
        )
        self.evaluator = make_evaluator(cfg, dataset, settings, params)
        self.outputs = None if cfg.task != "outputs" else OutputsTask.build(  # verification and the student
            cfg, dataset, params, device=settings.device, teacher_path=settings.teacher, teacher=teacher)
        self.val_indices = validation_indices(dataset, cfg, cfg.eval_samples * settings.val_batches)
        self.intake = Intake(
            self.view, self.subs, cfg, settings, self_hotkey=self.hotkey,
            population=self.evaluator.population, spec=self.state.model.spec, observer=self.telemetry,
        )
        self.server: HttpsServer | None = None
        self.http = SignedClient(wallet, timeout=settings.lead_timeout_s)  # GETs from the lead
        # where the lead's aggregates are read: its HTTPS routes, or its bucket (storage = "s3")
        self.links = Links(self.http, cfg, store_timeout_s=settings.s3_timeout_s)
        self.follower = LeadFollower(self.links)  # a follower's read of the lead's aggregates
        self.mirror = make_mirror(cfg.storage, settings)  # None: nodes read from us
        self.block = 0
        self.tempo = 100
        self.metagraph: Metagraph | None = None
        self.last_weights_block: int | None = None
        self.last_val_loss: float | None = None
        self.windows_closed = 0
        self._evaluated: dict[int, WindowEvaluation] = {}
        self._registered = (-1, 0)  # (window, uids registered when its evaluation began)
        self.waiting_for_lead = False
        # Outages are one status line a minute, not one warning per tick.
        self.chain_outage = Outage("the chain", str(getattr(chain, "url", "the configured endpoint")), log,
                                   hint="serving and retrying; windows close once blocks are read again")
        self.disk = Outage("room to write the validator's state", str(self.state.root), log)

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Reload the open window's submissions, serve HTTPS, publish endpoint + commitment."""
        await self.sync_chain()  # the server is not up yet: nothing can arrive while we reload
        await self.check_lead_config()
        self.restore_submissions()
        app = build_app(self.intake, self.state.store, self.status, max_body_bytes=self.settings.max_body_bytes,
                        on_sent=self.telemetry.on_sent, extra=lambda a: add_operator_routes(a, self))
        limits = ServerLimits(max_connections=self.settings.max_connections,
                              keepalive_timeout_s=self.settings.keepalive_timeout_s)
        self.server = await HttpsServer.start(app, self.state.identity, self.settings.host, self.settings.port, limits)
        if self.mirror is not None:
            self.mirror.start()
            self.mirror.resync(self.state.store)  # what a crash kept from reaching the bucket
        await wait_out(self.publish_endpoint, retry_on=CHAIN_OUTAGE, outage=self.chain_outage)
        params = await wait_out(lambda: self.chain.hyperparameters(self.cfg.netuid), retry_on=CHAIN_OUTAGE,
                                outage=self.chain_outage)
        self.tempo = int(params.tempo)
        await self.sync_chain(force=True)
        self.refresh_view()
        if has_no_stake(self.metagraph, self.hotkey):
            log.warning(progress_line("no stake: weights will be refused", reason=self.permit_hint()))

    async def check_lead_config(self) -> None:
        """Refuse to start (``SubnetConfigMismatch``, naming the fields) when another validator
        leads with another subnet config: our scores and aggregates would mean nothing."""
        lead = self.lead_endpoint()
        if lead is None or lead.hotkey == self.hotkey:
            return
        await check_against(self.http, lead, self.cfg)

    def restore_submissions(self) -> int:
        """Re-validate and re-add the stored submissions of θ's window; drop other windows."""
        journal, window = self.subs.journal, self.state.model.window
        if journal is None:
            return 0
        journal.prune(keep=window)
        restored = self.intake.restore(list(journal.read_window(window)), window)
        if restored:
            log.info(progress_line("restored submissions from disk", w=window, count=restored))
        return restored

    async def publish_endpoint(self) -> None:
        ip = self.settings.external_ip or self.settings.host
        commitment = ValidatorCommitment(fp=self.state.identity.fingerprint, crit=criteria_hash_of(self.cfg, self.params),
                                         cfg=self.cfg.config_hash(),
                                         st=self.mirror.read_location if self.mirror is not None else None)
        await self.chain.serve(self.wallet, self.cfg.netuid, ip, self.server.port)  # type: ignore[union-attr]
        await self.chain.commit(self.wallet, self.cfg.netuid, commitment.to_str())
        log.info(progress_line("published", uid=self.uid, hotkey=self.hotkey, endpoint=f"{ip}:{self.server.port}",  # type: ignore[union-attr]
                               commitment=commitment.to_str()))

    async def close(self) -> None:
        await self.peers.close()
        await self.links.close()
        await self.http.close()
        if self.mirror is not None:
            await self.mirror.close(timeout=self.settings.s3_timeout_s)
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def run(self, *, stop: asyncio.Event | None = None, max_windows: int | None = None) -> None:
        """Tick until ``stop`` is set (or ``max_windows`` windows were closed)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.tick()
            except StateWriteError as exc:  # a full or read-only disk: said once a minute, tried each tick
                self.disk.failed(exc)
            if max_windows is not None and self.windows_closed >= max_windows:
                return
            # a follower waiting for the lead's aggregate asks again soon: intake is shut meanwhile
            period = self.poll_period()
            if self.waiting_for_lead:
                period = min(period, FOLLOWER_POLL_S)
            with contextlib.suppress(asyncio.TimeoutError):  # the poll period elapsed
                await asyncio.wait_for(stop.wait(), period)

    def poll_period(self) -> float:
        """Seconds between ticks: the setting, or a quarter block on a faster chain, so a
        window is closed (and miners get its aggregate) within a fraction of a block."""
        chain_poll = getattr(self.chain, "poll_interval", None)
        if isinstance(chain_poll, (int, float)) and chain_poll > 0:
            return min(self.settings.poll_interval_s, float(chain_poll))
        return self.settings.poll_interval_s

    async def tick(self) -> None:
        """One pass of the loop: sync → close finished windows → weights."""
        await self.sync_chain()
        self.waiting_for_lead = False
        while should_close_window(self.state.model.window, window_of(self.block, self.cfg.blocks_per_window)):
            try:
                closed = await self.close_window()
            except ShardFetchError as exc:  # the data source hiccuped: evaluate again next tick
                log.warning(progress_line("fetching data shards failed, retrying next tick", reason=exc))
                break
            if not closed:
                self.waiting_for_lead = True
                break  # follower waiting for the lead's aggregate
        if should_set_weights(self.block, self.last_weights_block, self.tempo):
            await self.set_weights()
        await self.prepare_evaluation()

    # ---- steps ------------------------------------------------------------------------------

    async def sync_chain(self, *, force: bool = False) -> None:
        """Read the block and the metagraph; chain errors are logged and retried next tick."""
        try:
            block = await self.chain.block()
            if force or block != self.block or self.metagraph is None:  # changes per block at most
                self.metagraph = await self.chain.metagraph(self.cfg.netuid)
            self.block = block
        except ChainError as exc:
            self.chain_outage.failed(exc)
        else:
            self.chain_outage.recovered()
        self.refresh_view()

    def refresh_view(self) -> None:
        self.view.model_hash = self.state.model.hash()  # ModelState hashes once per version of θ
        self.view.open_window = self.state.model.window
        chain_window = window_of(self.block, self.cfg.blocks_per_window)
        self.view.ready = not should_close_window(self.state.model.window, chain_window)
        self.telemetry.on_progress(block=self.block, open_window=self.view.open_window, model_hash=self.view.model_hash)
        if self.metagraph is not None:
            mg = self.metagraph
            self.view.hotkeys = {int(u): str(h) for u, h in zip(mg.uids, mg.hotkeys, strict=True)}

    def lead_endpoint(self) -> ValidatorEndpoint | None:
        """The lead every node follows (``protocol.lead``), from the last metagraph read."""
        if self.metagraph is None:
            return None
        return lead_validator(self.metagraph)

    @property
    def uid(self) -> int | None:
        """Our uid in the last metagraph read (None before it, or when not registered)."""
        return self.view.uid_of(self.hotkey)

    def is_lead(self) -> bool:
        lead = self.lead_endpoint()
        return lead is None or lead.hotkey == self.hotkey

    async def close_window(self) -> bool:
        """Close ``state.model.window``; returns False when the aggregate is not available yet."""
        started = time.monotonic()
        window = self.state.model.window
        self.view.open_window, self.view.ready = window + 1, False  # late posts: 410, early: 425
        subs = self.subs.for_window(window)
        result = await self.evaluate(window, subs)
        envelope = await self.aggregate_for(window, result)
        if envelope is None:
            return False
        if self.mirror is not None:
            self.mirror.aggregate(window, envelope)  # uploaded in the background, in order
        header, payload = unpack_envelope(envelope, Aggregate)
        val_before = self.last_val_loss if self.last_val_loss is not None else await asyncio.to_thread(self._val_loss)
        self.state.model.apply_aggregate(header, payload)
        if header.contributors and self.outputs is None:
            self.evaluator.note_aggregate(payload, self.state.model.spec)
        val_after = val_before
        if header.contributors or self.windows_closed == 0:
            val_after = await asyncio.to_thread(self._val_loss)
        # The metrics line before θ_{w+1} is saved: a crash in between closes the window again from
        # the stored aggregate (same bytes, same model), and that second closing writes no line.
        self.write_metrics(window, header, result, subs, val_before, val_after, time.monotonic() - started)
        self.after_apply(window)
        return True

    async def prepare_evaluation(self) -> None:
        """While the window's submissions arrive: measure them (a few per tick, in a thread,
        so intake keeps flowing and a due close waits little)."""
        if not isinstance(self.evaluator, BatchedEvaluator) or self.settings.eval_prepare_s <= 0:
            return
        if not self.view.ready:  # the window is closing (or a follower waits): nothing to prepare
            return
        window, scores = self.state.model.window, self.state.scores
        subs = self.subs.for_window(window)
        if subs:
            await asyncio.to_thread(self.evaluator.prepare, self.state.model, subs, secret=self.state.secret,
                                    budget_s=self.settings.eval_prepare_s,
                                    previous_norm=scores.previous_norm(window),
                                    last_evaluated=scores.last_evaluated(), registered=self.registered(window))

    def registered(self, window: int) -> int:
        """Uids registered when ``window``'s evaluation began (the metagraph then), fixed for
        the window so the random batch measured on arrival is the one used at the close."""
        if self._registered[0] != window and self.metagraph is not None:
            self._registered = (window, len(self.metagraph.uids))
        return self._registered[1] if self._registered[0] == window else 0

    async def evaluate(self, window: int, subs: list) -> WindowEvaluation:
        """Evaluate and score a window once (cached while a follower waits for the lead)."""
        cached = self._evaluated.get(window)
        if cached is not None:
            return cached
        if subs:
            started = time.monotonic()
            judge = self.outputs.verifier.verify_window if self.outputs is not None else self.evaluator.evaluate_window
            result = await asyncio.to_thread(
                judge, self.state.model, subs,
                last_evaluated=self.state.scores.last_evaluated(), secret=self.state.secret,
                recent_z=self.state.scores.recent_z(), previous_norm=self.state.scores.previous_norm(window),
                registered=self.registered(window),
            )
            self.telemetry.on_evaluated(time.monotonic() - started)
        else:
            result = WindowEvaluation()
        self.update_scores(window, result, [s.uid for s in subs])
        self._evaluated = {window: result}
        return result

    def update_scores(self, window: int, result: WindowEvaluation, submitted: list[int]) -> None:
        hotkeys = self.view.hotkeys or {s: h for s, h in ((e.uid, e.hotkey) for e in result.evaluations.values())}
        self.state.scores.update(window, result.verdicts, submitted, hotkeys, median_norm=result.median_norm)

    async def aggregate_for(self, window: int, result: WindowEvaluation) -> bytes | None:
        """The envelope of Aggregate(window): stored already, built (lead), or fetched (follower)."""
        stored = self.state.store.get_aggregate(window)
        if stored is not None:
            return stored  # published before a restart: apply the same bytes again
        if not self.is_lead():
            return await self.fetch_from_lead(window)
        hotkeys = {**{e.uid: e.hotkey for e in result.evaluations.values()}, **self.view.hotkeys}
        if self.outputs is not None and isinstance(result, OutputsEvaluation):
            header, payload = await asyncio.to_thread(self.outputs.aggregate, self.state.model, result, hotkeys,
                                                      self.cfg, self.dataset)
        else:
            header, payload = await asyncio.to_thread(
                build_aggregate, self.state.model, result.verdicts, result.dense, hotkeys, self.cfg
            )
        envelope = pack_envelope(header, payload)
        self.state.store.put_aggregate(window, envelope)  # publish before applying (crash-safe)
        return envelope

    async def fetch_from_lead(self, window: int) -> bytes | None:
        """The lead's Aggregate(window) once it builds on our θ_w (stored then), else None."""
        lead = self.lead_endpoint()
        envelope = None if lead is None else await self.follower.fetch(lead, window, ours=self.state.model.hash())
        if envelope is not None:
            self.state.store.put_aggregate(window, envelope)
        return envelope

    def after_apply(self, window: int) -> None:
        """Persist θ_{w+1} (once caught up), checkpoint every K, open the next window."""
        caught_up = window_of(self.block, self.cfg.blocks_per_window) <= self.state.model.window
        if caught_up:
            self.write_state(self.state.save_model)  # behind: stored aggregates replay after a crash
        if should_checkpoint(self.state.model.window, self.cfg.checkpoint_every):
            manifest = self.write_state(self.state.checkpoint)
            if manifest is not None and self.mirror is not None:
                self.mirror.checkpoint_from(self.state.store, manifest)
        self.subs.drop_through(window)
        self._evaluated.pop(window, None)
        self.windows_closed += 1
        self.refresh_view()

    def write_state(self, write: Callable[[], T]) -> T | None:
        """A state write a full or read-only disk must not stop: θ stays in memory (and the
        published aggregates replay it after a crash); the status line says what to free.
        Returns what ``write`` returned, None when the disk refused it."""
        try:
            done = write()
        except StateWriteError as exc:
            self.disk.failed(exc)
            return None
        self.disk.recovered()
        return done

    def _val_loss(self) -> float:
        model = self.state.model.clone_model()
        loss = validation_loss(model, self.dataset, self.cfg, self.val_indices, self.settings.device)
        self.last_val_loss = loss
        return loss

    def write_metrics(self, window: int, header: Aggregate, result: WindowEvaluation, subs: list,
                      val_before: float, val_after: float, seconds: float) -> None:
        if window <= self.metrics_window:
            return  # closed again after a crash: its line was written the first time
        record = window_record(
            window, header, result, [s.uid for s in subs], val_before=val_before, val_after=val_after,
            ema=self.state.scores.ema(), refusals=dict(self.intake.refusals),
            traffic=self.telemetry.traffic(self.mirror.uploaded_bytes if self.mirror is not None else 0),
            block=self.block, seconds=seconds)
        if self.outputs is not None and isinstance(result, OutputsEvaluation):
            record.update(self.outputs.metrics(result))
        self.write_state(lambda: self.state.metrics.write(record))
        self.metrics_window = window
        self.telemetry.on_window(record)
        log.info(progress_line(
            "window", w=window, val_loss=val_after, subs=len(subs),
            contributors=len(header.contributors), hash=header.next_model_hash[:12],
        ))

    async def set_weights(self) -> None:
        weights = self.state.scores.weights()
        if not weights:
            return
        self.last_weights_block = self.block
        self.last_weights_block = await set_weights_once(
            self.chain, self.wallet, self.cfg.netuid, weights, block=self.block, tempo=self.tempo,
            permit_hint=self.permit_hint)

    def permit_hint(self) -> str:
        """Why this hotkey has no validator permit, and what to do about it."""
        return permit_hint(self.metagraph, self.hotkey, self.cfg.netuid)

    def status(self) -> dict[str, Any]:
        return {
            "window": self.state.model.window,
            "open_window": self.view.open_window,
            "block": self.block,
            "model_hash": self.view.model_hash,
            "criteria_version": criteria.CRITERIA_VERSION,
            "criteria_hash": criteria_hash_of(self.cfg, self.params),
            "task": self.cfg.task,
            "subnet_config_hash": self.cfg.config_hash(),
            "hotkey": self.hotkey,
            "lead": self.is_lead(),
            "submissions": self.subs.count(self.view.open_window),
            "latest_checkpoint": self.state.store.latest_checkpoint(),
            "storage": self.cfg.storage,
            "served_bytes": self.telemetry.sent_total,
            "val_loss": self.last_val_loss,
            **self.operator_status(),
        }

    def operator_status(self) -> dict[str, Any]:
        """The per-miner part of ``GET /status``: scores, verdicts, last submissions, refusals."""
        uid = self.metagraph.uid_of(self.hotkey) if self.metagraph is not None else None
        block_time = getattr(self.chain, "block_time", None)
        return {
            "uid": uid,
            "netuid": self.cfg.netuid,
            "block_time": block_time if isinstance(block_time, (int, float)) else None,
            "refusals": dict(self.intake.refusals),
            "connections": self.server.connection_stats() if self.server is not None else {},
            "miners": self.telemetry.miner_rows(self.metagraph, model_hash=self.view.model_hash,
                                                open_window=self.state.model.window, ema=self.state.scores.ema()),
        }
