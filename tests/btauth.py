"""The bittensor library's own btauth/1 verifier over the whole body, as a fake server uses it.

The validator verifies from the headers alone (``node.signed_http.verify_headers``); the fake
servers of the client tests use the library's verifier instead, so what ``SignedClient`` sends
is checked by the reference implementation, not only by our own. A failure is a 401
``RequestRefused`` with the same codes the validator uses.
"""

from __future__ import annotations

from aiohttp import web
from bittensor import http_auth

from node.signed_http import RequestRefused, request_target

AUTH_CODES: dict[type[http_auth.AuthError], str] = {
    http_auth.MalformedAuth: "auth_malformed",
    http_auth.WrongReceiver: "auth_wrong_receiver",
    http_auth.StaleRequest: "auth_stale",
    http_auth.ReplayedRequest: "auth_replayed",
    http_auth.BadSignature: "auth_bad_signature",
}


def verify_request(request: web.Request, body: bytes, self_hotkey: str, nonce_store: http_auth.NonceStore, *,
                   max_age: float = http_auth.DEFAULT_MAX_AGE) -> http_auth.Caller:
    """Authenticate a received request with ``http_auth.verify``; 401 + reason on failure."""
    try:
        return http_auth.verify(request.headers, body, method=request.method, path=request_target(request),
                                self_hotkey_ss58=self_hotkey, max_age=max_age, nonce_store=nonce_store)
    except http_auth.AuthError as exc:
        code = next((c for t, c in AUTH_CODES.items() if isinstance(exc, t)), "auth_failed")
        raise RequestRefused(401, code, str(exc) or type(exc).__name__) from exc
