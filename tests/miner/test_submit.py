"""Submission building, and delivery over real pinned HTTPS to a small 127.0.0.1 server."""

import asyncio
import hashlib

import pytest
from aiohttp import web
from bittensor import http_auth

from chain.wallets import create_wallet
from miner.submit import Submitter, build_submission
from node.signed_http import (
    RequestRefused,
    SignedClient,
    error_response,
    is_transient,
)
from node.tls import ensure_identity, server_context
from node.validators import ValidatorEndpoint
from protocol.messages import Submission, data_digest, unpack_envelope
from protocol.retry import Backoff
from protocol.subnet import SubnetConfig
from tests.btauth import verify_request

CFG = SubnetConfig(preset="tiny", dataset_hash="")
BASE = "ab" * 32


def _body(hotkey: str, payload: bytes = b"\x01\x02\x03", window: int = 5) -> bytes:
    return build_submission(
        CFG, window=window, uid=2, hotkey=hotkey, base_model_hash=BASE, indices=[4, 9, 1],
        payload=payload, clock=lambda: 1234.5,
    )


def test_build_submission_envelope_roundtrip():
    hotkey = "5" + "C" * 47
    header, payload = unpack_envelope(_body(hotkey), Submission)
    assert payload == b"\x01\x02\x03"
    assert header.window == 5 and header.uid == 2 and header.hotkey == hotkey
    assert header.netuid == CFG.netuid
    assert header.base_model_hash == BASE
    assert header.data_digest == data_digest([4, 9, 1])
    assert header.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert header.payload_len == 3 and header.sent_at == 1234.5


def test_retry_policy():
    assert is_transient(0) and is_transient(503) and is_transient(429) and is_transient(425)
    assert not any(is_transient(s) for s in (400, 401, 403, 409, 410, 413, 422, 495))


@pytest.fixture
def wallets(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    miner = create_wallet("miner", "default", tmp_path / "wallets")
    validator = create_wallet("validator", "default", tmp_path / "wallets")
    return miner, validator


class IntakeServer:
    """A 127.0.0.1 HTTPS /submit that verifies btauth, answers 503 ``fail_first`` times, then 200/409."""

    def __init__(self, validator_hotkey: str, fail_first: int = 0) -> None:
        self.hotkey = validator_hotkey
        self.fail_first = fail_first
        self.seen: set[str] = set()
        self.calls = 0
        self.nonces = http_auth.InMemoryNonceStore()

    async def submit(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.read()
        try:
            caller = verify_request(request, body, self.hotkey, self.nonces)
        except RequestRefused as refused:
            return refused.response()
        if self.calls <= self.fail_first:
            return error_response(503, "busy", "try again")
        header, _ = unpack_envelope(body, Submission)
        if header.hotkey != caller.hotkey_ss58:
            return error_response(401, "hotkey_mismatch", "signed by another hotkey")
        if header.hotkey in self.seen:
            return error_response(409, "duplicate", f"already have window {header.window} from this hotkey")
        self.seen.add(header.hotkey)
        return web.json_response({"accepted": True})


async def _serve(tmp_path, intake: IntakeServer) -> tuple[web.AppRunner, str, str]:
    ident = ensure_identity(tmp_path / "tls")
    app = web.Application()
    app.router.add_post("/submit", intake.submit)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(ident))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"https://127.0.0.1:{port}", ident.fingerprint


async def test_submit_accepted_then_a_duplicate_counts_as_held(tmp_path, wallets):
    miner, validator = wallets
    vhk = validator.hotkey.ss58_address
    intake = IntakeServer(vhk, fail_first=1)
    runner, url, fp = await _serve(tmp_path, intake)
    try:
        async with SignedClient(miner, timeout=10) as client:
            endpoint = ValidatorEndpoint(uid=0, hotkey=vhk, url=url, fingerprint=fp, stake=1.0)
            submitter = Submitter(client, max_attempts=3, backoff=Backoff(first=0.01))
            body = _body(miner.hotkey.ss58_address)
            [first] = await submitter.submit_all([endpoint], body, deadline_s=10)
            assert first.accepted and first.attempts == 2  # one 503, then accepted
            [again] = await submitter.submit_all([endpoint], body, deadline_s=10)
            # A resubmission (e.g. after a crash) gets 409 duplicate: the validator holds it, so it counts.
            assert again.accepted and again.status == 409 and again.code == "duplicate"
            assert "already have window 5" in again.reason and again.attempts == 1
            wrong = ValidatorEndpoint(uid=0, hotkey=vhk, url=url, fingerprint="cd" * 32, stake=1.0)
            [pinned] = await submitter.submit_all([wrong], body, deadline_s=10)
            assert not pinned.accepted and pinned.code == "pin_mismatch" and pinned.attempts == 1
            # Signed for another receiver: the server refuses with the auth reason.
            other = ValidatorEndpoint(uid=0, hotkey=miner.hotkey.ss58_address, url=url, fingerprint=fp, stake=1.0)
            [auth] = await submitter.submit_all([other], body, deadline_s=10)
            assert auth.status == 401 and auth.code.startswith("auth_")
    finally:
        await runner.cleanup()


async def test_unreachable_validator_gives_up_at_deadline(wallets):
    miner, validator = wallets
    endpoint = ValidatorEndpoint(uid=3, hotkey=validator.hotkey.ss58_address, url="https://127.0.0.1:9",
                                 fingerprint="ab" * 32, stake=1.0)
    async with SignedClient(miner, timeout=2) as client:
        started = asyncio.get_running_loop().time()
        [out] = await Submitter(client, max_attempts=10, backoff=Backoff(first=0.2)).submit_all(
            [endpoint], _body(miner.hotkey.ss58_address), deadline_s=1.0
        )
    assert not out.accepted and out.status == 0 and out.code == "unreachable"
    assert asyncio.get_running_loop().time() - started < 5
