"""Hostile requests against a devnet served in-process: each gets its status and a JSON error
code, no Python exception text leaves the process, and the chain state is unchanged."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import bittensor_core
import pytest

from chain.devnet.blockchain import Devnet
from chain.devnet.params import DevnetConfig
from chain.devnet.server import DevnetServer, error_body
from chain.devnet.testing import make_extrinsic
from chain.devnet.wire import MAX_BODY_BYTES
from chain.http_server import GuardedServer, ServerLimits

HUGE = str(2**70)
ALICE = bittensor_core.Keypair.create_from_uri("//Alice")
TABLES = ["accounts", "subnets", "neurons", "owners", "stake", "weights", "weight_rows", "bonds", "commitments"]


def rpc(method: str, params: dict | str = "{}", req_id: str = "1") -> bytes:
    p = params if isinstance(params, str) else json.dumps(params)
    return f'{{"id": {req_id}, "method": "{method}", "params": {p}}}'.encode()


def signed(net: Devnet, params: dict, function: str = "burned_register") -> dict:
    ext = make_extrinsic(ALICE, "SubtensorModule", function, {"netuid": 1, "hotkey": ALICE.ss58_address},
                         genesis_hash=net.genesis_hash, nonce=0, era_block=net.head())
    return {**ext.model_dump(), "params": params}


# name -> (body or callable(net) -> body, expected status, expected code)
CASES: dict[str, tuple] = {
    "deep_json": (b'{"id": 1, "method": "query", "params": {"p": ' + b"[" * 5000 + b"]" * 5000 + b"}}", 400, "ParseError"),
    "id_5000_digits": (rpc("block_number", req_id="9" * 5000), 400, "ParseError"),
    "id_2_pow_70": (rpc("block_number", req_id=HUGE), 400, "ParseError"),
    "netuid_2_pow_70": (rpc("query", f'{{"module": "SubtensorModule", "storage_function": "Tempo", '
                                     f'"params": [{HUGE}]}}'), 400, "ParseError"),
    "block_number_2_pow_70": (rpc("get_block", f'{{"block_number": {HUGE}}}'), 400, "ParseError"),
    "block_hash_2_pow_70": (rpc("block_hash", f'{{"block": {HUGE}}}'), 400, "ParseError"),
    "negative_2_pow_70": (rpc("get_block", f'{{"block_number": -{HUGE}}}'), 400, "ParseError"),
    "nan": (rpc("get_block", '{"block_number": NaN}'), 400, "ParseError"),
    "float_overflow": (rpc("get_block", '{"block_number": 1e400}'), 400, "ParseError"),
    "not_json": (b"{this is not json", 400, "ParseError"),
    "bad_utf8": (b'{"id": 1, "method": "\xff\xfe"}', 400, "ParseError"),
    "array_body": (b"[1, 2, 3]", 400, "InvalidRequest"),
    "extra_field": (b'{"id": 1, "method": "block_number", "params": {}, "x": 1}', 400, "InvalidRequest"),
    "unknown_method": (rpc("drop_tables"), 400, "MethodNotFound"),
    "wrong_param_type": (rpc("get_block", '{"block_number": "12"}'), 400, "InvalidParams"),
    "missing_param": (rpc("query", '{"module": "SubtensorModule"}'), 400, "InvalidParams"),
    "query_batch_bomb": (rpc("query_batch", {"module": "SubtensorModule", "storage_function": "Tempo",
                                             "param_sets": [[1]] * 5000}), 400, "InvalidParams"),
    "oversized": (b'{"id": 1, "method": "block_number", "params": {"x": "' + b"a" * MAX_BODY_BYTES + b'"}}',
                  413, "TooLarge"),
    "extrinsic_missing_fields": (rpc("submit", {"extrinsic": {"module": "SubtensorModule"}}), 400, "InvalidExtrinsic"),
    "extrinsic_netuid_2_pow_70": (lambda net: rpc("submit", json.dumps({"extrinsic": signed(net, {"netuid": 1})})
                                                  .replace('"netuid": 1', f'"netuid": {HUGE}')), 400, "ParseError"),
    "extrinsic_nonce_negative": (lambda net: rpc("submit", {"extrinsic": {**signed(net, {"netuid": 1}), "nonce": -1}}),
                                 400, "InvalidExtrinsic"),
}


@pytest.fixture
async def devnet(tmp_path):
    net = Devnet.open(tmp_path / "state", DevnetConfig(tempo=1000, block_time=5.0))
    server = await GuardedServer.start(DevnetServer(net).app(), None, "127.0.0.1", 0,
                                       ServerLimits(max_connections=64, keepalive_timeout_s=2.0), error_body)
    try:
        yield net, f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()
        net.close()


def snapshot(net: Devnet) -> dict[str, list]:
    return {t: [tuple(r) for r in net.state.conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2")] for t in TABLES}


def assert_clean_error(status: int, text: str, expected_status: int, expected_code: str) -> None:
    assert status == expected_status, text[:300]
    data = json.loads(text)
    assert data["error"]["code"] == expected_code, data
    assert "Traceback" not in text and "Error(" not in text and "sqlite" not in text.lower(), text[:300]
    assert len(text) < 1000  # no echo of the request


@pytest.mark.parametrize("name", sorted(CASES))
async def test_malformed_rpc_is_a_400_with_a_json_error(devnet, name):
    net, url = devnet
    body, status, code = CASES[name]
    body = body(net) if callable(body) else body
    before = snapshot(net)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, s.post(
        url + "/rpc", data=body, headers={"Content-Type": "application/json"}
    ) as resp:
        assert_clean_error(resp.status, await resp.text(), status, code)
    assert snapshot(net) == before and net.pool == []


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/rpc", 405, "method_not_allowed"),
    ("GET", "/../../etc/passwd", 404, "not_found"),
    ("DELETE", "/health", 405, "method_not_allowed"),
])
async def test_aiohttp_refusals_are_json(devnet, method, path, status, code):
    net, url = devnet
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, s.request(
        method, url + path
    ) as resp:
        assert_clean_error(resp.status, await resp.text(), status, code)


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /\x1b[31mred HTTP/1.1\r\nHost: x\r\n\r\n",
])
async def test_bad_http_is_a_json_400(devnet, raw):
    net, url = devnet
    before = snapshot(net)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1].startswith(b"4"), head
    assert b"application/json" in head
    data = json.loads(body)
    assert data["error"]["code"] in ("bad_http", "not_found"), data
    assert snapshot(net) == before
