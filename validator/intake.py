"""``POST /submit``: every check a submission must pass before it is stored.

Order of checks (the first failure answers, with an ``ErrorResponse`` reason). From the
headers alone, before a slot is taken or a byte of the body read: Content-Type, no
Content-Encoding (415) →
btauth signature over the declared body sha256, receiver, freshness, replay (401) → signer
registered (403) → no other upload of this hotkey in flight (429 ``in_flight``) →
Content-Length (411) and size (413) → a free slot (429 ``busy``). Then the body, read at a minimum
rate under a deadline (408) → its sha256 is the signed one (401) → envelope and strict
schema (400) → subnet (400) → signer is the claimed hotkey (403) → hotkey registered
at the claimed uid (403) → window open (410 closed / 425 not yet) → one per
(window, hotkey) (409) → base model is θ_w (422) → data digest of the assignment
(422) → payload decodes to the model's exact shapes, all finite (422). An accepted
submission is written to the state directory before the 200 answer (503 ``storage`` if
that fails), and ``restore`` re-validates what a restart reads back the same way.
Nothing stored is touched by a refusal. An unsigned or unregistered client never holds a
slot, a registered one holds at most one, and a slow body is cut off, so no client can
stall the others.

Example:
    >>> intake = Intake(view, store, cfg, settings, self_hotkey=hk, population=n)
    >>> app.router.add_post("/submit", intake.handle)
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp import web
from bittensor import http_auth

from node.logs import progress_line
from node.signed_http import RequestRefused, check_body, error_response, verify_headers
from protocol import codec, outputs_codec
from protocol.distill import outputs_spec
from protocol.messages import MessageError, Submission, SubmitAccepted, data_digest, unpack_envelope
from protocol.retry import Outage
from protocol.subnet import SubnetConfig
from protocol.windows import assigned_samples
from validator.settings import ValidatorSettings
from validator.store import (
    DuplicateSubmission,
    JournalRecord,
    StoredSubmission,
    SubmissionStore,
    WindowFull,
)

log = logging.getLogger("swarmtrain.validator.intake")

SUBMIT_PATH = "/submit"
CONTENT_TYPE = "application/octet-stream"
ACQUIRE_TIMEOUT_S = 5.0
READ_CHUNK = 1 << 16


@dataclass
class IntakeView:
    """What intake checks against; the service updates it each window / metagraph refresh."""

    open_window: int = -1  # the window being collected (-1: not ready yet)
    ready: bool = False  # False while the previous window is being closed
    model_hash: str = ""  # hash of θ_open_window
    hotkeys: dict[int, str] = field(default_factory=dict)  # uid -> registered hotkey

    def uid_of(self, hotkey: str | None) -> int | None:
        """The uid ``hotkey`` is registered as (None: unknown or not registered)."""
        return next((uid for uid, h in self.hotkeys.items() if h == hotkey), None)


class IntakeObserver(Protocol):
    """Who hears about every request (``validator.telemetry.ValidatorTelemetry``)."""

    def on_received(self, nbytes: int) -> None: ...
    def on_outcome(self, header: Submission | None, outcome: str, expected_hash: str | None = None) -> None: ...


class _Nobody:
    def on_received(self, nbytes: int) -> None:
        pass

    def on_outcome(self, header: Submission | None, outcome: str, expected_hash: str | None = None) -> None:
        pass


class Intake:
    """The ``POST /submit`` handler and its checks (no chain calls on the request path)."""

    def __init__(
        self, view: IntakeView, store: SubmissionStore, cfg: SubnetConfig, settings: ValidatorSettings, *,
        self_hotkey: str, population: int, spec: dict[str, tuple[int, ...]],
        nonce_store: http_auth.NonceStore | None = None, observer: IntakeObserver | None = None,
    ) -> None:
        self.view, self.store, self.cfg, self.settings = view, store, cfg, settings
        self.self_hotkey = self_hotkey
        self.population = population
        self.spec = spec
        self.codec_cfg = cfg.codec_config()
        self.outputs_spec = outputs_spec(cfg) if cfg.task == "outputs" else None
        self.nonce_store = nonce_store or http_auth.InMemoryNonceStore(retention=settings.nonce_retention_s)
        self._slots = asyncio.Semaphore(settings.max_concurrent_requests)
        self._in_flight: set[str] = set()  # hotkeys with an upload being read or checked
        self.refusals: dict[str, int] = {}  # code -> count, for /status
        self.observer: IntakeObserver = observer or _Nobody()
        where = str(store.journal.root) if store.journal is not None else "the submission journal"
        self.disk = Outage("room to store submissions", where, log,
                           hint="each upload is answered 503 storage and the miner retries")

    async def handle(self, request: web.Request) -> web.Response:
        """Headers first (signature, registration, one upload per hotkey), then a slot, then the body."""
        try:
            signer, declared = self._check_headers(request)
        except RequestRefused as refused:  # nothing read: close rather than drain an unwanted body
            return self._refuse(refused, close=True)
        if self.view.uid_of(signer) is None:
            return self._refuse(RequestRefused(403, "not_registered", f"hotkey {signer} is not registered on "
                                               f"netuid {self.cfg.netuid}"), signer, close=True)
        if signer in self._in_flight:
            return self._refuse(RequestRefused(429, "in_flight", "this hotkey already has an upload in "
                                               "progress; wait for its answer"), signer, close=True)
        self._in_flight.add(signer)
        try:
            return await self._with_slot(request, signer, declared)
        finally:
            self._in_flight.discard(signer)

    def _check_headers(self, request: web.Request) -> tuple[str, str]:
        """(signer, declared body sha256): the btauth signature from the headers; raises ``RequestRefused``."""
        if request.content_type != CONTENT_TYPE:
            raise RequestRefused(415, "unsupported_media_type", f"Content-Type must be {CONTENT_TYPE}")
        if request.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise RequestRefused(415, "unsupported_media_type", "Content-Encoding is not accepted (no compressed "
                                 "bodies: the payload is already compressed)")
        return verify_headers(request, self.self_hotkey, self.nonce_store)

    def _check_length(self, request: web.Request) -> None:
        limit, length = self.settings.max_body_bytes, request.content_length
        if length is None:
            raise RequestRefused(411, "length_required", "a Content-Length header is required")
        if length > limit:
            raise RequestRefused(413, "too_large", f"body of {length} bytes exceeds {limit}")

    async def _with_slot(self, request: web.Request, signer: str, declared: str) -> web.Response:
        try:
            self._check_length(request)
        except RequestRefused as refused:
            return self._refuse(refused, signer, close=True)
        try:
            await asyncio.wait_for(self._slots.acquire(), ACQUIRE_TIMEOUT_S)
        except asyncio.TimeoutError:
            return self._refuse(RequestRefused(429, "busy", "too many submissions in flight; retry shortly"),
                                signer, close=True)
        try:
            body = await self._read_body(request)
            self.observer.on_received(len(body))
            check_body(body, declared)
            return await self._accept(body, signer)
        except RequestRefused as refused:
            return self._refuse(refused, signer, close=refused.status in (408, 411, 413))
        finally:
            self._slots.release()

    def _refuse(self, refused: RequestRefused, hotkey: str | None = None, *, close: bool = False) -> web.Response:
        """Count and log one refusal (with the signer's uid and hotkey once the signature held)."""
        self.refusals[refused.code] = self.refusals.get(refused.code, 0) + 1
        self.observer.on_outcome(refused.header, refused.code, self._expected_hash(refused.header))
        log.info(progress_line("refused", uid=self.view.uid_of(hotkey), hotkey=hotkey, status=refused.status,
                               code=refused.code, reason=refused.reason))
        response = error_response(refused.status, refused.code, refused.reason)
        if close:
            response.force_close()
        return response

    async def _accept(self, body: bytes, signer: str) -> web.Response:
        sub = await asyncio.to_thread(self.admit, body, signer)
        header = sub.header
        try:
            self._add(sub)
        except RequestRefused as refused:
            refused.header = header
            raise
        try:
            await asyncio.to_thread(self.store.persist, sub)  # on disk before we say 200
        except OSError as exc:  # a full disk: one status line a minute, not one per upload
            self.store.discard(sub)
            self.disk.failed(f"cannot store submission w={sub.window} uid={sub.uid}: {exc}")
            raise RequestRefused(503, "storage", "the validator could not store the submission; retry") from exc
        self.disk.recovered()
        log.info(progress_line("accepted", w=header.window, uid=header.uid, hotkey=header.hotkey, bytes=len(sub.payload)))
        self.observer.on_outcome(header, "accepted", self._expected_hash(header))
        accepted = SubmitAccepted(window=header.window, uid=header.uid, payload_sha256=header.payload_sha256)
        return web.json_response(text=accepted.model_dump_json())

    def admit(self, body: bytes, signer: str) -> StoredSubmission:
        """Every check after the signature, in order: parse, identity, window, content, decode.

        ``signer`` is the hotkey that signed the request. Raises ``RequestRefused``; stores nothing.
        """
        header, payload = self._parse(body)
        self._check_identity(header, signer)
        try:
            self._check_window(header)
            self._check_content(header, self._sample_count(payload))
            update = self._decode(payload)
        except RequestRefused as refused:
            refused.header = header  # the signer holds this uid: operators may see it per uid
            raise
        return StoredSubmission.summarize(header, payload, update, self.spec)

    def _expected_hash(self, header: Submission | None) -> str | None:
        """θ_w's hash when ``header`` is for the open window (its base model must be that)."""
        if header is None or header.window != self.view.open_window:
            return None
        return self.view.model_hash

    def _add(self, sub: StoredSubmission) -> None:
        try:
            self.store.add(sub)
        except DuplicateSubmission as exc:
            raise RequestRefused(409, "duplicate", str(exc)) from exc
        except WindowFull as exc:
            raise RequestRefused(429, "window_full", str(exc)) from exc

    def restore(self, records: list[JournalRecord], window: int) -> int:
        """Re-validate stored submissions of ``window`` (the open one) and add them; returns how many.

        The checks a fresh POST gets, except the signature (verified when it arrived) and
        the registration check while the metagraph is unknown; a failing record is logged
        and skipped.
        """
        restored = 0
        for record in sorted(records, key=lambda r: r.arrival):
            try:
                sub = self._revalidate(record, window)
                self.store.restore(sub)
            except (RequestRefused, DuplicateSubmission, WindowFull) as exc:
                log.warning(progress_line("skipping stored submission", path=record.path, reason=exc))
                continue
            restored += 1
        return restored

    def _revalidate(self, record: JournalRecord, window: int) -> StoredSubmission:
        header, payload = self._parse(record.envelope)
        if header.window != window or record.path.stem != str(header.uid):
            raise RequestRefused(400, "malformed", f"stored as {record.path.stem} of window {window}, "
                                 f"but names uid {header.uid} window {header.window}")
        if self.view.hotkeys:
            self._check_identity(header, header.hotkey)
        self._check_content(header, self._sample_count(payload))
        update = self._decode(payload)
        return StoredSubmission.summarize(header, payload, update, self.spec,
                                          received_at=record.received_at, arrival=record.arrival)

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, of its declared length, at no less than ``min_body_rate`` after a grace
        period and within ``request_timeout_s``; a slower client is cut off (408)."""
        self._check_length(request)
        length = request.content_length or 0
        body = bytearray()
        loop = asyncio.get_running_loop()
        start, deadline = loop.time(), loop.time() + self.settings.request_timeout_s
        while len(body) < length:
            # The next bytes are due when the mean rate would fall below the minimum.
            due = min(deadline, start + self.settings.body_grace_s + len(body) / self.settings.min_body_rate)
            try:
                chunk = await asyncio.wait_for(request.content.read(READ_CHUNK), max(due - loop.time(), 0.0))
            except aiohttp.ClientPayloadError as exc:
                raise RequestRefused(400, "malformed", f"body ended after {len(body)} of {length} bytes") from exc
            except asyncio.TimeoutError as exc:
                raise RequestRefused(408, "timeout", f"body too slow: {len(body)} of {length} bytes after "
                                     f"{loop.time() - start:.1f}s (at least {self.settings.min_body_rate} "
                                     f"bytes/s, {self.settings.request_timeout_s:g}s in all)") from exc
            if not chunk:
                raise RequestRefused(400, "malformed", f"body ended after {len(body)} of {length} bytes")
            body += chunk
        return bytes(body)

    def _parse(self, body: bytes) -> tuple[Submission, bytes]:
        try:
            header, payload = unpack_envelope(body, Submission, max_payload_bytes=self.settings.max_body_bytes)
        except MessageError as exc:
            raise RequestRefused(400, "malformed", str(exc)) from exc
        if header.netuid != self.cfg.netuid:
            raise RequestRefused(400, "wrong_netuid", f"this validator serves netuid {self.cfg.netuid}, not {header.netuid}")
        return header, payload

    def _check_identity(self, header: Submission, signer: str) -> None:
        if header.hotkey != signer:
            raise RequestRefused(403, "hotkey_mismatch", "the request is signed by a different hotkey than the submission names")
        registered = self.view.hotkeys.get(header.uid)
        if header.hotkey not in self.view.hotkeys.values():
            raise RequestRefused(403, "not_registered", f"hotkey {header.hotkey} is not registered on netuid {self.cfg.netuid}")
        if registered != header.hotkey:
            raise RequestRefused(403, "wrong_uid", f"uid {header.uid} is not registered to hotkey {header.hotkey}")

    def _check_window(self, header: Submission) -> None:
        open_window = self.view.open_window
        if header.window < open_window:
            raise RequestRefused(410, "window_closed", f"window {header.window} is closed; the open window is {open_window}")
        if header.window > open_window:
            raise RequestRefused(425, "window_not_open", f"window {header.window} is not open yet; the open window is {open_window}")
        if not self.view.ready:
            raise RequestRefused(425, "window_not_open", f"window {open_window} opens once the previous window is aggregated")
        if self.store.has(header.window, header.hotkey):
            raise RequestRefused(409, "duplicate", f"hotkey already submitted for window {header.window}")

    def _check_content(self, header: Submission, count: int) -> None:
        if header.base_model_hash != self.view.model_hash:
            raise RequestRefused(
                422, "wrong_base_model",
                f"base_model_hash {header.base_model_hash[:12]}… is not θ_{header.window} ({self.view.model_hash[:12]}…)",
            )
        if header.data_digest != self._expected_digest(header.window, header.uid, count):
            raise RequestRefused(422, "wrong_data_digest", "data_digest does not match the samples assigned to this uid "
                                 "and window: is the miner's subnet config this validator's? (GET /subnet-config; "
                                 "`swarmtrain subnet fetch`)")

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (bounded; lives as long as the intake)
    def _expected_digest(self, window: int, uid: int, count: int) -> str:
        """Digest of the first ``count`` samples assigned to ``uid`` in ``window``."""
        cfg = self.cfg
        return data_digest(assigned_samples(cfg.seed_bytes, window, uid, cfg.samples_per_window, self.population)[:count])

    def _sample_count(self, payload: bytes) -> int:
        """Samples the submission covers: the whole assignment (gradients), or the first n of it,
        n read from the outputs payload's header (outputs mode)."""
        if self.outputs_spec is None:
            return self.cfg.samples_per_window
        try:
            return outputs_codec.read_header(payload, self.outputs_spec)
        except outputs_codec.OutputsCodecError as exc:
            raise RequestRefused(422, "invalid_payload", str(exc)) from exc

    def _decode(self, payload: bytes) -> codec.SparseUpdate | outputs_codec.TeacherOutputs:
        """The decoded update (``codec.SparseUpdate``) or teacher outputs (``TeacherOutputs``)."""
        try:
            if self.outputs_spec is not None:
                return outputs_codec.decode(payload, self.outputs_spec)
            return codec.decode(payload, self.spec, self.codec_cfg)
        except (codec.CodecError, outputs_codec.OutputsCodecError) as exc:
            raise RequestRefused(422, "invalid_payload", str(exc)) from exc
