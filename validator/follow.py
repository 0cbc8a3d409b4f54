"""A following validator's read of the lead's ``Aggregate(w)``: the one aggregate it applies
instead of building its own (``protocol.lead``: every node follows the same lead).

Read through ``node.fetch.Links`` (the lead's HTTPS routes, or the bucket its commitment
names when the subnet's storage is ``s3``). A lead that does not answer is one status line
a minute (``protocol.retry.Outage``), not one per tick; an aggregate that does not start
from the θ_w this validator holds is refused (applying it would split the validator off).

Example:
    >>> follower = LeadFollower(Links(http, cfg))
    >>> envelope = await follower.fetch(lead, window, ours=state.model.hash())   # None: not yet / not usable
"""

from __future__ import annotations

import logging

from node.fetch import AggregateNotReady, FetchError, Links
from node.logs import progress_line
from node.signed_http import NodeHttpError
from node.validators import ValidatorEndpoint
from protocol.retry import Outage

log = logging.getLogger("swarmtrain.validator")


class LeadFollower:
    """Fetches and checks the lead's aggregates; ``outage`` says when the lead does not answer."""

    def __init__(self, links: Links) -> None:
        self.links = links
        self.outage = Outage("the lead validator's aggregate", "the lead", log)

    async def fetch(self, lead: ValidatorEndpoint, window: int, *, ours: str) -> bytes | None:
        """The envelope of the lead's Aggregate(window) when it builds on ``ours`` (θ_w's hash);
        None while it is not published, the lead (or its bucket) does not answer, or it
        builds on another model."""
        try:
            link = self.links.to(lead)
            envelope = await link.aggregate_envelope(window)
            header, _ = link.parse_aggregate(window, envelope)
        except AggregateNotReady:
            return None
        except (FetchError, NodeHttpError) as exc:  # StorageError too: the lead's bucket is unreachable
            self.outage.where = f"uid {lead.uid} {lead.url}"
            self.outage.failed(f"window {window}: {exc}")
            return None
        self.outage.recovered()
        if header.base_model_hash != ours:
            log.error(progress_line(
                "the lead's aggregate does not build on our model: not applied", w=header.window, lead=lead.uid,
                lead_hotkey=lead.hotkey, aggregate_base=header.base_model_hash[:12], ours=ours[:12],
            ))
            return None
        return envelope
