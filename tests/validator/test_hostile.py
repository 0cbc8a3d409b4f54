"""Hostile requests against a real HTTPS validator: each gets its status and JSON error code,
and nothing stored changes (submissions in memory and on disk)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import logging
import pickle
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import torch
from bittensor import http_auth
from bittensor.sp_core import Keypair

from node.logs import ROOT_LOGGER, setup_logging
from node.signed_http import HEADER_BODY_SHA256, SignedClient, parse_error, sign_headers
from node.tls import pinned
from protocol import codec
from protocol.messages import Aggregate, pack_envelope
from validator.service import Validator
from validator.settings import ValidatorSettings

from .helpers import CFG, FakeChain, encode_delta, garbage_delta, submission_body, toy_dataset

VAL = Keypair.create_from_uri("//HostileValidator")
MINERS = [Keypair.create_from_uri(f"//HostileMiner{i}") for i in range(3)]
STRANGER = Keypair.create_from_uri("//HostileStranger")
MAX_BODY = 256 * 1024
OCTET = "application/octet-stream"
HUGE = 2**70


@pytest.fixture(scope="module")
def ds():
    return toy_dataset()


@pytest.fixture
async def node(tmp_path, ds):
    chain = FakeChain(CFG.netuid, [VAL.ss58_address] + [m.ss58_address for m in MINERS], [100.0, 0, 0, 0])
    settings = ValidatorSettings(netuid=CFG.netuid, state_dir=tmp_path / "v", port=0, max_body_bytes=MAX_BODY,
                                 poll_interval_s=0.05, max_concurrent_requests=4, request_timeout_s=5.0,
                                 body_grace_s=0.3, min_body_rate=64 * 1024)
    v = Validator(chain, VAL, CFG, settings, ds, hotkey=VAL.ss58_address)
    await v.start()
    try:
        yield v
    finally:
        await v.close()


def url(v: Validator) -> str:
    return f"https://127.0.0.1:{v.server.port}"


def stored(v: Validator) -> tuple[Any, ...]:
    """What a refusal must not change: submissions in memory and on disk."""
    journal = v.subs.journal.root if v.subs.journal is not None else None
    files = sorted(str(p.relative_to(journal)) for p in journal.rglob("*")) if journal and journal.exists() else []
    return tuple((w, tuple(sorted(subs))) for w, subs in v.subs._by_window.items()), tuple(files)


@dataclass
class World:
    """What a case builds its request from."""

    v: Validator
    ds: Any
    payloads: dict[int, bytes] = field(default_factory=dict)

    @property
    def h(self) -> str:
        return self.v.state.model.hash()

    def payload(self, seed: int = 0) -> bytes:
        if seed not in self.payloads:
            self.payloads[seed] = encode_delta({k: t * 0.01 for k, t in garbage_delta(self.v.state.model, seed).items()})
        return self.payloads[seed]

    def body(self, kp: Keypair = MINERS[1], uid: int = 2, window: int = 0, payload: bytes | None = None,
             **kw: Any) -> bytes:
        kw.setdefault("base_hash", self.h)
        return submission_body(kp, uid, window, self.payload() if payload is None else payload, ds=self.ds, **kw)


Request = tuple[str, str, dict[str, str], bytes]  # method, path, headers, body


def signed(body: bytes, kp: Keypair = MINERS[1], *, path: str = "/submit", method: str = "POST",
           receiver: str | None = VAL.ss58_address, **overrides: str) -> dict[str, str]:
    headers = {"Content-Type": OCTET, **sign_headers(kp, method, path, body, receiver)}
    for k, val in overrides.items():
        name = k.replace("_", "-")
        if val == "":
            headers.pop(name, None)
        else:
            headers[name] = val
    return headers


def post(body: bytes, headers: dict[str, str] | None = None) -> Request:
    return "POST", "/submit", signed(body) if headers is None else headers, body


def _with_values(w: World, value: float) -> bytes:
    marker = 0.012345678
    update = codec.compress(garbage_delta(w.v.state.model), CFG.codec_config())
    update = {n: codec.SparseTensor(t.shape, t.indices, torch.sign(t.values) * marker) for n, t in update.items()}
    data = bytearray(codec.encode(update, CFG.codec_config()))
    at = data.find(struct.pack("<f", marker))
    data[at : at + 4] = struct.pack("<f", value)
    return bytes(data)


def _wrong_shape(w: World) -> bytes:
    name = next(iter(w.v.state.model.spec))
    return codec.encode(codec.compress({name: torch.randn(3, 5) * 0.01}, CFG.codec_config()), CFG.codec_config())


def _aggregate_envelope(w: World) -> bytes:
    header = Aggregate(netuid=CFG.netuid, window=0, contributors=(), base_model_hash=w.h, next_model_hash=w.h,
                       payload_sha256=hashlib.sha256(b"").hexdigest(), payload_len=0, outer_lr=1.0)
    return pack_envelope(header, b"")


def _header_edit(w: World, **changes: Any) -> bytes:
    body = w.body()
    size = struct.unpack(">I", body[:4])[0]
    head = json.loads(body[4 : 4 + size])
    head.update(changes)
    raw = json.dumps(head).encode()
    return struct.pack(">I", len(raw)) + raw + body[4 + size :]


def _stale(w: World, seconds: float) -> Request:
    body = w.body()
    nonce = time.time_ns() + int(seconds * 1e9)
    headers = http_auth.sign(MINERS[1], method="POST", path="/submit", body=body, receiver_ss58=VAL.ss58_address,
                             nonce_ns=nonce)
    return post(body, {"Content-Type": OCTET, HEADER_BODY_SHA256: hashlib.sha256(body).hexdigest(), **headers})


def _forged(w: World) -> Request:
    body = w.body()
    headers = signed(body, STRANGER)
    headers[http_auth.HEADER_HOTKEY] = MINERS[1].ss58_address
    return post(body, headers)


def _declared_other(w: World) -> Request:
    body, other = w.body(), w.body(payload=w.payload(5))
    return post(other, signed(body))  # signature and declared hash of ``body``; ``other`` sent


def _gzip_bomb(w: World) -> Request:
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    return post(bomb, {**signed(bomb), "Content-Encoding": "gzip"})


# name -> (build(World) -> Request, status, code)
CASES: dict[str, tuple[Callable[[World], Request], int, str]] = {
    # signature, checked from the headers before a slot or the body
    "unsigned": (lambda w: post(w.body(), {"Content-Type": OCTET}), 401, "auth_malformed"),
    "no_body_hash": (lambda w: post(w.body(), signed(w.body(), X_Swarmtrain_Body_Sha256="")), 401, "auth_malformed"),
    "body_hash_not_hex": (lambda w: post(w.body(), signed(w.body(), X_Swarmtrain_Body_Sha256="zz" * 32)), 401,
                          "auth_malformed"),
    "body_not_the_signed_one": (_declared_other, 401, "auth_bad_signature"),
    "forged_signature": (_forged, 401, "auth_bad_signature"),
    "signature_not_hex": (lambda w: post(w.body(), signed(w.body(), X_Bittensor_Signature="0xnothex")), 401,
                          "auth_malformed"),
    "signature_truncated": (lambda w: post(w.body(), signed(w.body(), X_Bittensor_Signature="0x" + "ab" * 10)), 401,
                            "auth_malformed"),
    "wrong_receiver": (lambda w: post(w.body(), signed(w.body(), receiver=MINERS[0].ss58_address)), 401,
                       "auth_wrong_receiver"),
    "no_receiver": (lambda w: post(w.body(), signed(w.body(), receiver=None)), 401, "auth_wrong_receiver"),
    "stale_nonce": (lambda w: _stale(w, -60), 401, "auth_stale"),
    "future_nonce": (lambda w: _stale(w, +60), 401, "auth_stale"),
    "nonce_not_a_number": (lambda w: post(w.body(), signed(w.body(), X_Bittensor_Nonce="12ab")), 401, "auth_malformed"),
    "nonce_5000_digits": (lambda w: post(w.body(), signed(w.body(), X_Bittensor_Nonce="9" * 5000)), 401,
                          "auth_malformed"),
    "unknown_crypto": (lambda w: post(w.body(), signed(w.body(), X_Bittensor_Crypto="rsa")), 401, "auth_malformed"),
    "wrong_version": (lambda w: post(w.body(), signed(w.body(), X_Bittensor_Version="9")), 401, "auth_malformed"),
    "hotkey_not_ss58": (lambda w: post(w.body(), signed(w.body(), X_Bittensor_Hotkey="../../etc/passwd")), 401,
                        "auth_malformed"),
    "hotkey_unicode_bidi": (lambda w: post(w.body(), signed(w.body(), X_Bittensor_Hotkey="5F\u202eevil")), 401,
                            "auth_malformed"),
    "signed_for_another_path": (lambda w: post(w.body(), signed(w.body(), path="/other")), 401, "auth_bad_signature"),
    "signed_as_get": (lambda w: post(w.body(), signed(w.body(), method="GET")), 401, "auth_bad_signature"),
    "unregistered_signer": (lambda w: post(w.body(STRANGER), signed(w.body(STRANGER), STRANGER)), 403,
                            "not_registered"),
    # framing, before the body is read
    "wrong_content_type": (lambda w: post(w.body(), {**signed(w.body()), "Content-Type": "application/json"}), 415,
                           "unsupported_media_type"),
    "text_content_type": (lambda w: post(w.body(), signed(w.body(), Content_Type="text/plain")), 415,
                          "unsupported_media_type"),
    "gzip_bomb": (_gzip_bomb, 415, "unsupported_media_type"),
    "oversized": (lambda w: post(b"\0" * (MAX_BODY + 1)), 413, "too_large"),
    # the envelope
    "garbage_envelope": (lambda w: post(b"\x00\x00\x00\x05{bad}x"), 400, "malformed"),
    "header_length_past_body": (lambda w: post(struct.pack(">I", 2**31) + b"{}"), 400, "malformed"),
    "pickle_body": (lambda w: post(pickle.dumps({"window": 0, "uid": 2}, protocol=4)), 400, "malformed"),
    "aggregate_instead_of_submission": (lambda w: post(_aggregate_envelope(w)), 400, "malformed"),
    "extra_header_field": (lambda w: post(_header_edit(w, admin=True)), 400, "malformed"),
    "window_2_pow_70": (lambda w: post(_header_edit(w, window=HUGE)), 400, "malformed"),
    "uid_2_pow_70": (lambda w: post(_header_edit(w, uid=HUGE)), 400, "malformed"),
    "negative_window": (lambda w: post(_header_edit(w, window=-1)), 400, "malformed"),
    "payload_len_lies": (lambda w: post(_header_edit(w, payload_len=1)), 400, "malformed"),
    "wrong_netuid": (lambda w: post(w.body(netuid=99)), 400, "wrong_netuid"),
    # identity, window and content
    "names_another_hotkey": (lambda w: post(w.body(MINERS[2], 3), signed(w.body(MINERS[2], 3), MINERS[1])), 403,
                             "hotkey_mismatch"),
    "wrong_uid": (lambda w: post(w.body(uid=1)), 403, "wrong_uid"),
    "future_window": (lambda w: post(w.body(window=1)), 425, "window_not_open"),
    "wrong_base_model": (lambda w: post(w.body(base_hash="ab" * 32)), 422, "wrong_base_model"),
    "wrong_data_digest": (lambda w: post(w.body(digest="cd" * 32)), 422, "wrong_data_digest"),
    "nan_payload": (lambda w: post(w.body(payload=_with_values(w, float("nan")))), 422, "invalid_payload"),
    "inf_payload": (lambda w: post(w.body(payload=_with_values(w, float("inf")))), 422, "invalid_payload"),
    "wrong_shapes": (lambda w: post(w.body(payload=_wrong_shape(w))), 422, "invalid_payload"),
    "truncated_payload": (lambda w: post(w.body(payload=w.payload()[:-7])), 422, "invalid_payload"),
    "pickle_payload": (lambda w: post(w.body(payload=pickle.dumps(torch.zeros(4)))), 422, "invalid_payload"),
    # routes
    "path_traversal_post": (lambda w: ("POST", "/submit/../../etc/passwd", {"Content-Type": OCTET}, b"x"), 404,
                            "not_found"),
    "path_traversal_checkpoint": (lambda w: ("GET", "/checkpoint/..%2F..%2Fetc%2Fpasswd", {}, b""), 400, "bad_window"),
    "window_too_many_digits": (lambda w: ("GET", "/aggregate/" + "9" * 40, {}, b""), 400, "bad_window"),
    "negative_aggregate": (lambda w: ("GET", "/aggregate/-1", {}, b""), 400, "bad_window"),
    "put_submit": (lambda w: ("PUT", "/submit", {}, b""), 405, "method_not_allowed"),
    "unknown_route": (lambda w: ("GET", "/admin", {}, b""), 404, "not_found"),
}


async def send(v: Validator, req: Request) -> tuple[int, str, str]:
    method, path, headers, body = req
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20), auto_decompress=False) as s, s.request(
        method, url(v) + path, data=body or None, headers=headers, ssl=pinned(v.state.identity.fingerprint),
        skip_auto_headers=["Content-Type"] if "Content-Type" not in headers else None,
    ) as resp:
        text = (await resp.read()).decode("utf-8", "replace")
        return resp.status, resp.headers.get("Content-Type", ""), text


async def test_each_hostile_request_is_refused_and_changes_nothing(node, ds):
    v = node
    world = World(v, ds)
    assert len(CASES) >= 40
    failures = []
    for name, (build, status, code) in CASES.items():
        before = stored(v)
        got_status, content_type, text = await send(v, build(world))
        got = (got_status, parse_error(text.encode())[0])
        if got != (status, code) or "application/json" not in content_type or stored(v) != before:
            failures.append(f"{name}: expected {(status, code)}, got {got} {content_type} {text[:160]!r}")
        if "Traceback" in text or "Error(" in text:
            failures.append(f"{name}: exception text in the answer: {text[:160]!r}")
    assert not failures, "\n".join(failures)
    assert v.subs.count(0) == 0


async def test_a_replayed_refused_request_is_refused_as_a_replay(node, ds):
    v = node
    world = World(v, ds)
    req = post(world.body(base_hash="ab" * 32))
    assert (await send(v, req))[0] == 422
    status, _, text = await send(v, req)
    assert (status, parse_error(text.encode())[0]) == (401, "auth_replayed")


async def raw_tls(v: Validator, data: bytes, *, read: bool = True) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", v.server.port, ssl=ctx)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(8192), 10) if read else b""
    finally:
        writer.close()


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: v\r\nContent-Length: -1\r\n\r\n",
    b"GET /status HTTP/1.1\r\nHost: v\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /\x1b]0;owned\x07 HTTP/1.1\r\nHost: v\r\n\r\n",
])
async def test_bad_http_answers_json_and_logs_one_escaped_line(node, raw):
    v = node
    before = stored(v)
    root = logging.getLogger(ROOT_LOGGER)
    saved = (root.handlers[:], root.level, root.propagate)
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    try:
        answer = await raw_tls(v, raw)
    finally:
        root.handlers[:], root.level, root.propagate = saved
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1][:1] == b"4" and b"application/json" in head, head
    assert parse_error(body)[0] in ("bad_http", "not_found")
    assert stored(v) == before
    log = stream.getvalue()
    assert "Traceback" not in log and "\x1b" not in log and "\x07" not in log, log
    assert sum("refused" in line for line in log.splitlines()) == 1, log


async def test_unsigned_slow_uploads_hold_no_slot_and_a_valid_upload_goes_through(node, ds):
    """More slow unsigned uploads than intake slots, and idle connections: a miner still gets 200."""
    v = node
    world = World(v, ds)
    head = (b"POST /submit HTTP/1.1\r\nHost: v\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 200000\r\n\r\n" + b"\0" * 10)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    held = []
    for _ in range(3 * v.settings.max_concurrent_requests):
        held.append(await asyncio.open_connection("127.0.0.1", v.server.port, ssl=ctx))
        held[-1][1].write(head)
    for _ in range(20):  # idle: handshake done, nothing sent
        held.append(await asyncio.open_connection("127.0.0.1", v.server.port, ssl=ctx))
    try:
        async with SignedClient(MINERS[0], timeout=20) as client:
            status, _ = await client.post(url(v), "/submit", world.body(MINERS[0], 1),
                                          receiver_hotkey=VAL.ss58_address,
                                          pinned_fingerprint=v.state.identity.fingerprint)
        assert status == 200
        assert v.intake.refusals.get("auth_malformed", 0) >= 3 * v.settings.max_concurrent_requests
    finally:
        for _, writer in held:
            writer.close()


async def _trickle(v: Validator, body: bytes, headers: dict[str, str], bytes_per_s: int) -> tuple[int, str]:
    """Send ``body`` at ``bytes_per_s``; returns the answer once the server gives one."""

    async def slow() -> Any:
        for i in range(0, len(body), 256):
            yield body[i : i + 256]
            await asyncio.sleep(256 / bytes_per_s)

    headers = {**headers, "Content-Length": str(len(body))}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s, s.post(
        url(v) + "/submit", data=slow(), headers=headers, ssl=pinned(v.state.identity.fingerprint)
    ) as resp:
        return resp.status, parse_error(await resp.read())[0]


async def test_a_slow_signed_body_is_cut_off_and_a_second_upload_of_its_hotkey_waits(node, ds):
    v = node
    world = World(v, ds)
    body = world.body()  # MINERS[1], uid 2
    second = world.body(payload=world.payload(9))
    slow = asyncio.create_task(_trickle(v, body, signed(body), bytes_per_s=4096))
    for _ in range(200):  # until intake holds the slow upload (bounded wait)
        if MINERS[1].ss58_address in v.intake._in_flight:
            break
        await asyncio.sleep(0.05)
    status, _, text = await send(v, post(second))
    assert (status, parse_error(text.encode())[0]) == (429, "in_flight")
    assert await slow == (408, "timeout")
    assert v.subs.count(0) == 0
    status, _, text = await send(v, post(second))  # the hotkey's slot is free again
    assert status == 200, text


async def test_chunked_body_needs_a_length_and_an_aborted_upload_logs_one_line(node, ds):
    v = node
    world = World(v, ds)
    root = logging.getLogger(ROOT_LOGGER)
    saved = (root.handlers[:], root.level, root.propagate)
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    try:
        body = world.body()

        async def chunks() -> Any:
            yield body

        async with aiohttp.ClientSession() as s, s.post(
            url(v) + "/submit", data=chunks(), headers=signed(body), ssl=pinned(v.state.identity.fingerprint)
        ) as resp:
            assert (resp.status, parse_error(await resp.read())[0]) == (411, "length_required")
        body = world.body(payload=world.payload(4))
        headers = signed(body)
        lines = [f"POST /submit HTTP/1.1\r\nHost: v\r\nContent-Length: {len(body)}\r\n"]
        lines += [f"{k}: {val}\r\n" for k, val in headers.items()]
        await raw_tls(v, ("".join(lines) + "\r\n").encode() + body[:100], read=False)  # then hangs up
        await asyncio.sleep(0.5)
    finally:
        root.handlers[:], root.level, root.propagate = saved
    log = stream.getvalue()
    assert "Traceback" not in log, log
    assert v.subs.count(0) == 0
