"""POST /submit refusals, each with its reason, against a real HTTPS validator and a fake chain."""

from __future__ import annotations

import struct

import aiohttp
import pytest
import torch
from bittensor import http_auth
from bittensor.sp_core import Keypair

from node.model_state import ModelState
from node.signed_http import SignedClient, parse_error, sign_headers
from node.tls import pinned
from protocol import codec
from validator.service import Validator
from validator.settings import ValidatorSettings

from .helpers import (
    CFG,
    FakeChain,
    encode_delta,
    garbage_delta,
    submission_body,
    toy_dataset,
)

VAL = Keypair.create_from_uri("//IntakeValidator")
MINERS = [Keypair.create_from_uri(f"//IntakeMiner{i}") for i in range(3)]
STRANGER = Keypair.create_from_uri("//Stranger")
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def ds():
    return toy_dataset()


@pytest.fixture
async def node(tmp_path, ds):
    chain = FakeChain(CFG.netuid, [VAL.ss58_address] + [m.ss58_address for m in MINERS], [100.0, 0, 0, 0])
    settings = ValidatorSettings(netuid=CFG.netuid, state_dir=tmp_path / "v", port=0, max_body_bytes=MAX_BODY, poll_interval_s=0.05)
    v = Validator(chain, VAL, CFG, settings, ds, hotkey=VAL.ss58_address)
    await v.start()
    try:
        yield v, chain
    finally:
        await v.close()


def _url(v: Validator) -> str:
    return f"https://127.0.0.1:{v.server.port}"


async def _post(v: Validator, kp: Keypair, body: bytes) -> tuple[int, str]:
    async with SignedClient(kp, timeout=10) as client:
        status, resp = await client.post(
            _url(v), "/submit", body, receiver_hotkey=VAL.ss58_address, pinned_fingerprint=v.state.identity.fingerprint
        )
    return status, (parse_error(resp)[0] if status != 200 else "ok")


async def _raw(v: Validator, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    headers = {"Content-Type": "application/octet-stream", **headers}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, s.post(
        _url(v) + "/submit", data=body, headers=headers, ssl=pinned(v.state.identity.fingerprint)
    ) as resp:
        return resp.status, parse_error(await resp.read())[0] if resp.status != 200 else "ok"


def _payload(state: ModelState, seed: int = 0) -> bytes:
    return encode_delta({k: t * 0.01 for k, t in garbage_delta(state, seed).items()})


def _nan_payload(state: ModelState) -> bytes:
    marker = 0.012345678
    update = codec.compress(garbage_delta(state), CFG.codec_config())
    update = {n: codec.SparseTensor(t.shape, t.indices, torch.sign(t.values) * marker) for n, t in update.items()}
    data = bytearray(codec.encode(update, CFG.codec_config()))
    at = data.find(struct.pack("<f", marker))
    data[at : at + 4] = struct.pack("<f", float("nan"))
    return bytes(data)


async def test_good_submission_then_each_refusal(node, ds):
    v, _ = node
    state = v.state.model
    h = state.hash()
    m0, m1, m2 = MINERS
    good = submission_body(m0, 1, 0, _payload(state), base_hash=h, ds=ds)
    assert await _post(v, m0, good) == (200, "ok")
    assert await _post(v, m0, submission_body(m0, 1, 0, _payload(state, 1), base_hash=h, ds=ds)) == (409, "duplicate")

    cases = {
        "unregistered": (STRANGER, submission_body(STRANGER, 1, 0, _payload(state), base_hash=h, ds=ds), (403, "not_registered")),
        "wrong_uid": (m1, submission_body(m1, 1, 0, _payload(state), base_hash=h, ds=ds), (403, "wrong_uid")),
        "signer_mismatch": (m2, submission_body(m1, 2, 0, _payload(state), base_hash=h, ds=ds), (403, "hotkey_mismatch")),
        "future_window": (m1, submission_body(m1, 2, 1, _payload(state), base_hash=h, ds=ds), (425, "window_not_open")),
        "malformed": (m1, b"\x00\x00\x00\x05{bad}" + b"x", (400, "malformed")),
        "wrong_netuid": (m1, submission_body(m1, 2, 0, _payload(state), base_hash=h, ds=ds, netuid=99), (400, "wrong_netuid")),
        "oversized": (m1, b"\0" * (MAX_BODY + 1), (413, "too_large")),
        "nan": (m1, submission_body(m1, 2, 0, _nan_payload(state), base_hash=h, ds=ds), (422, "invalid_payload")),
        "wrong_base": (m1, submission_body(m1, 2, 0, _payload(state), base_hash="ab" * 32, ds=ds), (422, "wrong_base_model")),
        "wrong_digest": (m1, submission_body(m1, 2, 0, _payload(state), base_hash=h, ds=ds, digest="cd" * 32), (422, "wrong_data_digest")),
    }
    for name, (kp, body, expected) in cases.items():
        assert await _post(v, kp, body) == expected, name


async def test_wrong_shapes_refused(node, ds):
    v, _ = node
    state = v.state.model
    name = next(iter(state.spec))
    bad = {name: torch.randn(3, 5) * 0.01}  # a tensor of the right name with the wrong shape
    payload = codec.encode(codec.compress(bad, CFG.codec_config()), CFG.codec_config())
    body = submission_body(MINERS[1], 2, 0, payload, base_hash=state.hash(), ds=ds)
    assert await _post(v, MINERS[1], body) == (422, "invalid_payload")
    assert v.subs.count(0) == 0  # nothing stored


async def test_replayed_and_forged_refused(node, ds):
    v, _ = node
    state = v.state.model
    m1, m2 = MINERS[1], MINERS[2]
    body = submission_body(m1, 2, 0, _payload(state), base_hash=state.hash(), ds=ds)
    headers = sign_headers(m1, "POST", "/submit", body, VAL.ss58_address)
    assert await _raw(v, headers, body) == (200, "ok")
    assert await _raw(v, headers, body) == (401, "auth_replayed")
    body2 = submission_body(m2, 3, 0, _payload(state), base_hash=state.hash(), ds=ds)
    forged = sign_headers(STRANGER, "POST", "/submit", body2, VAL.ss58_address)
    forged[http_auth.HEADER_HOTKEY] = m2.ss58_address  # claims to be m2, signed by someone else
    assert await _raw(v, forged, body2) == (401, "auth_bad_signature")
    wrong_receiver = sign_headers(m2, "POST", "/submit", body2, m1.ss58_address)
    assert await _raw(v, wrong_receiver, body2) == (401, "auth_wrong_receiver")
    assert v.subs.count(0) == 1 and v.intake.refusals["auth_replayed"] == 1


async def test_closed_window_refused(node, ds):
    v, chain = node
    state0_hash = v.state.model.hash()
    chain.block_now = CFG.blocks_per_window  # window 1 starts: window 0 closes (empty)
    await v.tick()
    assert v.state.model.window == 1
    late = submission_body(MINERS[0], 1, 0, _payload(v.state.model), base_hash=state0_hash, ds=ds)
    assert await _post(v, MINERS[0], late) == (410, "window_closed")


async def test_get_endpoints(node):
    v, _ = node
    fp = v.state.identity.fingerprint
    async with SignedClient(MINERS[0], timeout=10) as client:
        status, body = await client.get(_url(v), "/aggregate/0", receiver_hotkey=VAL.ss58_address, pinned_fingerprint=fp)
        assert (status, parse_error(body)[0]) == (404, "not_ready")
        status, body = await client.get(_url(v), "/aggregate/x1", receiver_hotkey=None, pinned_fingerprint=fp)
        assert status == 400
        status, body = await client.get(_url(v), "/checkpoint/latest", receiver_hotkey=None, pinned_fingerprint=fp)
        assert status == 200 and b'"window":0' in body
        status, body = await client.get(_url(v), "/status", receiver_hotkey=None, pinned_fingerprint=fp)
        assert status == 200 and v.state.model.hash().encode() in body


async def test_log_lines_carry_uid_next_to_hotkey(node, ds):
    """One key=value line per accepted or refused submission, with the signer's uid and hotkey."""
    import io
    import logging

    from node.logs import ROOT_LOGGER, setup_logging

    v, _ = node
    state = v.state.model
    root = logging.getLogger(ROOT_LOGGER)
    saved = (root.handlers[:], root.level, root.propagate)
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    try:
        good = submission_body(MINERS[0], 1, 0, _payload(state), base_hash=state.hash(), ds=ds)
        assert await _post(v, MINERS[0], good) == (200, "ok")
        late = submission_body(MINERS[1], 2, 1, _payload(state), base_hash=state.hash(), ds=ds)
        assert await _post(v, MINERS[1], late) == (425, "window_not_open")
        stranger = submission_body(STRANGER, 1, 0, _payload(state), base_hash=state.hash(), ds=ds)
        assert await _post(v, STRANGER, stranger) == (403, "not_registered")
    finally:
        root.handlers[:], root.level, root.propagate = saved
    lines = [line for line in stream.getvalue().splitlines() if "swarmtrain.validator.intake:" in line]
    assert len(lines) == 3, lines
    assert f"accepted w=0 uid=1 hotkey={MINERS[0].ss58_address} bytes=" in lines[0]
    assert f"refused uid=2 hotkey={MINERS[1].ss58_address} status=425 code=window_not_open reason=" in lines[1]
    assert f"refused uid=None hotkey={STRANGER.ss58_address} status=403 code=not_registered" in lines[2]
