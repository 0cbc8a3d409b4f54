"""Every answer a node reads has a bound derived from the subnet config; a hostile (pinned)
validator that sends more is cut off at the bound with a clear error, and checkpoint bytes
are hashed as they stream in."""

from __future__ import annotations

import hashlib
import time

import pytest
import torch
from aiohttp import web
from bittensor.sp_core import Keypair

from node.fetch import FetchError, ValidatorLink
from node.model_state import ModelState
from node.signed_http import SignedClient
from node.tls import ensure_identity, server_context
from node.validators import ValidatorEndpoint
from protocol import codec
from protocol.aggregate_payload import encode_aggregate
from protocol.limits import MAX_DOCUMENT_BYTES, response_limits
from protocol.messages import CheckpointManifest
from protocol.subnet import SubnetConfig

CFG = SubnetConfig(preset="tiny", dataset_hash="")
MINER = Keypair.create_from_uri("//LimitsMiner")
LIMITS = response_limits(CFG)


def _manifest(window: int, data: bytes, size: int | None = None) -> CheckpointManifest:
    return CheckpointManifest(netuid=CFG.netuid, window=window, model_hash="a" * 64, config={"preset": "tiny"},
                              subnet_config_hash=CFG.config_hash(), file_sha256=hashlib.sha256(data).hexdigest(),
                              file_size=len(data) if size is None else size, created_at=time.time())


async def _stream(request: web.Request, total: int, declare: bool) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Length": str(total)} if declare else {})
    await resp.prepare(request)
    chunk, sent = b"\0" * (1 << 16), 0
    try:
        while sent < total:
            await resp.write(chunk)
            sent += len(chunk)
    except (ConnectionError, RuntimeError):
        pass  # the reader hung up at its bound, as it should
    return resp


@pytest.fixture
async def hostile(tmp_path):
    """A pinned HTTPS server that sends oversized answers; yields a link to it and what it served."""
    good = b"checkpoint-bytes" * 100
    served: dict[str, int] = {}

    async def route(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        served[name] = served.get(name, 0) + 1
        if name == "aggregate/0":  # no Content-Length: streamed far past the bound
            return await _stream(request, 4 * LIMITS.aggregate, declare=False)
        if name == "aggregate/1":  # announces more than the bound
            return await _stream(request, 2 * LIMITS.aggregate, declare=True)
        if name == "checkpoint/latest":
            return web.Response(body=b"{" + b" " * (2 * MAX_DOCUMENT_BYTES) + b"}")
        if name == "checkpoint/5":  # more bytes than its manifest says
            return web.Response(body=good + b"extra")
        if name == "checkpoint/6":
            return web.Response(body=good)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{name:.+}", route)
    ident = ensure_identity(tmp_path / "tls")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(ident))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint = ValidatorEndpoint(uid=0, hotkey=MINER.ss58_address, url=f"https://127.0.0.1:{port}",
                                 fingerprint=ident.fingerprint, stake=1.0)
    client = SignedClient(MINER, timeout=20)
    try:
        yield ValidatorLink(client, endpoint, CFG, retry_s=1.0), good, served
    finally:
        await client.close()
        await runner.cleanup()


async def test_an_aggregate_past_the_bound_is_cut_off_not_retried(hostile):
    link, _, served = hostile
    with pytest.raises(FetchError, match="cut off"):
        await link.aggregate(0)
    with pytest.raises(FetchError, match="announces"):
        await link.aggregate(1)
    assert served == {"aggregate/0": 1, "aggregate/1": 1}  # a bound is final: not tried again


async def test_an_oversized_manifest_and_a_long_checkpoint_are_refused(hostile):
    link, good, _ = hostile
    with pytest.raises(FetchError, match="limit"):
        await link.latest_checkpoint()
    with pytest.raises(FetchError, match="limit"):
        await link.checkpoint_bytes(_manifest(5, good))  # cut at the manifest's file_size
    too_big = _manifest(6, good, size=LIMITS.checkpoint + 1)
    with pytest.raises(FetchError, match="bound of this subnet's model"):
        await link.checkpoint_bytes(too_big)
    assert await link.checkpoint_bytes(_manifest(6, good)) == good  # hashed while streaming
    with pytest.raises(FetchError, match="sha256"):
        await link.checkpoint_bytes(_manifest(6, good[:-1] + b"X"))


def test_bounds_hold_the_largest_honest_answers():
    """The worst an honest validator sends (a dense aggregate, a checkpoint with momentum) fits."""
    cfg = CFG.model_copy(update={"outer_momentum": 0.9})
    state = ModelState.initial(cfg)
    dense = {n: torch.randn(s) for n, s in state.spec.items()}
    assert len(encode_aggregate(dense, state.spec)) + 16 * 1024 < LIMITS.aggregate
    update = codec.encode(codec.compress(dense, cfg.codec_config()), cfg.codec_config())
    assert len(update) < response_limits(cfg).submission
    assert len(state.to_bytes()) < response_limits(cfg).checkpoint
    assert LIMITS.aggregate < 10 * LIMITS.parameters  # linear in the model, not a fixed 64 MiB / 64 GiB
