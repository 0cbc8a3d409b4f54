"""Building a signed submission and delivering it to every validator.

The body is the binary envelope ``u32 len | Submission JSON | codec payload``.
It is POSTed to ``/submit`` of every permitted validator over HTTPS pinned to the
fingerprint that validator committed on chain, signed with the miner's hotkey
(btauth). A 4xx is a refusal with a reason and is not retried; connection errors,
timeouts, 425 (too early), 429 and 5xx are retried with ``protocol.retry``'s backoff while
the deadline allows.

Example:
    >>> body = build_submission(cfg, window=w, uid=3, hotkey=hk, base_model_hash=h,
    ...                         indices=idx, payload=payload)
    >>> outcomes = await Submitter(client).submit_all(validators, body, deadline_s=20)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from node.logs import progress_line
from node.signed_http import NodeHttpError, PinMismatchError, is_transient, parse_error
from node.validators import ValidatorEndpoint
from protocol.messages import Submission, data_digest, pack_envelope
from protocol.retry import TRANSIENT_BACKOFF, Backoff, retry
from protocol.subnet import PROTOCOL_VERSION, SubnetConfig

log = logging.getLogger("swarmtrain.miner.submit")

SUBMIT_PATH = "/submit"


def build_submission(
    cfg: SubnetConfig,
    *,
    window: int,
    uid: int,
    hotkey: str,
    base_model_hash: str,
    indices: Sequence[int],
    payload: bytes,
    criteria_hash: str | None = None,
    clock: Callable[[], float] = time.time,
) -> bytes:
    """The envelope bytes of a ``Submission`` for ``payload`` (a codec-encoded update)."""
    header = Submission(
        protocol_version=PROTOCOL_VERSION,
        netuid=cfg.netuid,
        window=window,
        uid=uid,
        hotkey=hotkey,
        base_model_hash=base_model_hash,
        data_digest=data_digest(indices),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_len=len(payload),
        criteria_hash=criteria_hash,
        sent_at=clock(),
    )
    return pack_envelope(header, payload)


@dataclass(frozen=True)
class SubmitOutcome:
    """What one validator answered: accepted, or refused/unreachable with a reason."""

    validator_uid: int
    status: int  # HTTP status; 0 when no answer came back
    accepted: bool
    code: str
    reason: str
    attempts: int
    seconds: float


class Poster(Protocol):
    """The part of ``node.signed_http.SignedClient`` the submitter needs."""

    async def post(
        self, url: str, path: str, body: bytes, *, receiver_hotkey: str, pinned_fingerprint: str
    ) -> tuple[int, bytes]: ...


class Submitter:
    """Posts one body to many validators concurrently, with retries and backoff.

    Example:
        >>> s = Submitter(signed_client, max_attempts=4, backoff=Backoff(first=0.5))
        >>> [o.accepted for o in await s.submit_all(validators, body, deadline_s=30)]
    """

    def __init__(self, client: Poster, *, max_attempts: int = 4, backoff: Backoff = TRANSIENT_BACKOFF) -> None:
        self.client = client
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff

    async def submit_all(
        self, validators: Sequence[ValidatorEndpoint], body: bytes, *, deadline_s: float
    ) -> list[SubmitOutcome]:
        """Submit to every validator; never raises for one validator's failure."""
        tasks = [self.submit_one(v, body, deadline_s=deadline_s) for v in validators]
        return list(await asyncio.gather(*tasks))

    async def submit_one(self, v: ValidatorEndpoint, body: bytes, *, deadline_s: float) -> SubmitOutcome:
        loop = asyncio.get_running_loop()
        started, attempts = loop.time(), 0

        async def attempt() -> tuple[int, str, str]:
            nonlocal attempts
            attempts += 1
            outcome = await self._attempt(v, body)
            if is_transient(outcome[0]):
                log.info(progress_line("submission not taken, retrying", validator=v.uid, hotkey=v.hotkey,
                                       code=outcome[1], reason=outcome[2], attempt=attempts))
            return outcome

        status, code, reason = await retry(
            attempt, timeout=deadline_s, backoff=self.backoff, max_attempts=self.max_attempts,
            again=lambda outcome: is_transient(outcome[0]),
        )
        return SubmitOutcome(v.uid, status, status == 200, code, reason, attempts, loop.time() - started)

    async def _attempt(self, v: ValidatorEndpoint, body: bytes) -> tuple[int, str, str]:
        try:
            status, resp = await self.client.post(
                v.url, SUBMIT_PATH, body, receiver_hotkey=v.hotkey, pinned_fingerprint=v.fingerprint
            )
        except PinMismatchError as exc:
            # A different certificate than the one on chain: never retry, never trust.
            return 495, "pin_mismatch", str(exc)
        except NodeHttpError as exc:
            return 0, "unreachable", str(exc)
        if status == 200:
            return status, "accepted", ""
        code, reason = parse_error(resp)
        return status, code, reason
