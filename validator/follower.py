"""A non-lead validator follows the lead's published aggregates (pinned HTTPS GETs).

Example:
    >>> link = LeadLink(wallet, lead_endpoint, timeout=30)
    >>> envelope = await link.aggregate(7)      # None while the lead has not published it
"""

from __future__ import annotations

import logging
from typing import Any

from node.signed_http import NodeHttpError, SignedClient, parse_error
from node.storage import StoreGetter
from node.validators import ValidatorEndpoint

log = logging.getLogger("swarmtrain.validator.follower")


class LeadLink:
    """Reads Aggregate(w) envelopes from the lead validator, or from the object store it
    publishes to (``getter``: a ``node.storage.StoreGetter``, for ``storage = "s3"`` subnets)."""

    def __init__(self, wallet: Any, endpoint: ValidatorEndpoint, *, timeout: float = 30.0,
                 getter: StoreGetter | None = None) -> None:
        self.endpoint = endpoint
        self.client: SignedClient | StoreGetter = getter or SignedClient(wallet, timeout=timeout)

    async def aggregate(self, window: int) -> bytes | None:
        """The envelope bytes, or None when not published yet or the lead is unreachable."""
        try:
            status, body = await self.client.get(
                self.endpoint.url, f"/aggregate/{window}",
                receiver_hotkey=self.endpoint.hotkey, pinned_fingerprint=self.endpoint.fingerprint,
            )
        except NodeHttpError as exc:
            log.warning("lead validator uid %d unreachable: %s", self.endpoint.uid, exc)
            return None
        if status == 200:
            return body
        if status != 404:
            log.warning("lead validator answered %d for aggregate %d: %s", status, window, parse_error(body))
        return None

    async def close(self) -> None:
        await self.client.close()
