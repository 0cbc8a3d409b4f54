"""TLS pinning and btauth signing over a real HTTPS server on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from bittensor import http_auth
from bittensor.sp_core import Keypair

from node.signed_http import (
    PinMismatchError,
    RequestRefused,
    SignedClient,
    parse_error,
)
from node.tls import (
    TlsError,
    cert_fingerprint,
    ensure_identity,
    fingerprint_of_pem,
    pinned,
    server_context,
)
from tests.btauth import verify_request

SERVER = Keypair.create_from_uri("//Server")
CLIENT = Keypair.create_from_uri("//Client")
OTHER = Keypair.create_from_uri("//Other")


def test_identity_is_stable_across_loads(tmp_path):
    first = ensure_identity(tmp_path / "tls")
    second = ensure_identity(tmp_path / "tls")
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 64
    assert (first.key_path.stat().st_mode & 0o777) == 0o600
    other = ensure_identity(tmp_path / "tls2")
    assert other.fingerprint != first.fingerprint


def test_fingerprint_matches_der_hash(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ident = ensure_identity(tmp_path)
    cert = x509.load_pem_x509_certificate(ident.cert_path.read_bytes())
    assert cert_fingerprint(cert.public_bytes(serialization.Encoding.DER)) == ident.fingerprint
    with pytest.raises(TlsError):
        fingerprint_of_pem(b"not a cert")


@pytest.mark.parametrize("bad", ["zz" * 32, "ab" * 20, ""])
def test_pinned_rejects_bad_fingerprints(bad):
    with pytest.raises(TlsError):
        pinned(bad)


async def _start_server(tmp_path, nonce_store=None):
    ident = ensure_identity(tmp_path / "tls")
    store = nonce_store or http_auth.InMemoryNonceStore()

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            caller = verify_request(request, body, SERVER.ss58_address, store)
        except RequestRefused as refused:
            return refused.response()
        return web.json_response({"caller": caller.hotkey_ss58, "len": len(body)})

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(ident))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"https://127.0.0.1:{port}", ident


async def test_right_fingerprint_connects_and_signature_verifies(tmp_path):
    runner, url, ident = await _start_server(tmp_path)
    try:
        async with SignedClient(CLIENT, timeout=5) as client:
            status, body = await client.post(
                url, "/echo", b"hello", receiver_hotkey=SERVER.ss58_address, pinned_fingerprint=ident.fingerprint
            )
            assert status == 200, body
            assert b'"caller": "' + CLIENT.ss58_address.encode() in body
            status, _ = await client.get(
                url, "/echo", receiver_hotkey=SERVER.ss58_address, pinned_fingerprint=ident.fingerprint
            )
            assert status == 200
    finally:
        await runner.cleanup()


async def test_wrong_fingerprint_is_refused(tmp_path):
    runner, url, _ = await _start_server(tmp_path)
    try:
        async with SignedClient(CLIENT, timeout=5) as client:
            with pytest.raises(PinMismatchError, match="pinned"):
                await client.post(
                    url, "/echo", b"x", receiver_hotkey=SERVER.ss58_address, pinned_fingerprint="00" * 32
                )
    finally:
        await runner.cleanup()


async def _raw_post(url: str, ident, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, s.post(
        url + "/echo", data=body, headers=headers, ssl=pinned(ident.fingerprint)
    ) as resp:
        return resp.status, await resp.read()


async def test_forged_replayed_stale_wrong_receiver_refused(tmp_path):
    runner, url, ident = await _start_server(tmp_path)
    try:
        good = http_auth.sign(CLIENT, method="POST", path="/echo", body=b"abc", receiver_ss58=SERVER.ss58_address)
        assert (await _raw_post(url, ident, good, b"abc"))[0] == 200
        status, body = await _raw_post(url, ident, good, b"abc")
        assert (status, parse_error(body)[0]) == (401, "auth_replayed")
        forged = http_auth.sign(CLIENT, method="POST", path="/echo", body=b"abc", receiver_ss58=SERVER.ss58_address)
        status, body = await _raw_post(url, ident, forged, b"abd")  # body swapped after signing
        assert (status, parse_error(body)[0]) == (401, "auth_bad_signature")
        old = http_auth.sign(
            CLIENT, method="POST", path="/echo", body=b"a", receiver_ss58=SERVER.ss58_address,
            nonce_ns=time.time_ns() - 120 * 10**9,
        )
        status, body = await _raw_post(url, ident, old, b"a")
        assert (status, parse_error(body)[0]) == (401, "auth_stale")
        wrong = http_auth.sign(CLIENT, method="POST", path="/echo", body=b"a", receiver_ss58=OTHER.ss58_address)
        status, body = await _raw_post(url, ident, wrong, b"a")
        assert (status, parse_error(body)[0]) == (401, "auth_wrong_receiver")
        status, body = await _raw_post(url, ident, {}, b"a")
        assert (status, parse_error(body)[0]) == (401, "auth_malformed")
        assert parse_error(body)[1]  # a reason is given
    finally:
        await runner.cleanup()
