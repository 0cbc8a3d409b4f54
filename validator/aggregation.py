"""Aggregation: top-G contributors (scored 1, highest gain first), clipped to the median norm, averaged.

The result is published as an ``Aggregate`` header plus an aggregate payload
(``protocol.aggregate_payload``); ``next_model_hash`` is computed by applying exactly those
bytes to a copy of θ_w, the same code path every other node runs.

Example:
    >>> header, payload = build_aggregate(state, verdicts, dense, hotkeys, cfg)
    >>> state.apply_aggregate(header, payload) == header.next_model_hash
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from torch import Tensor

from node.model_state import ModelState
from protocol import criteria, outer
from protocol.aggregate_payload import encode_aggregate
from protocol.messages import Aggregate, Contributor
from protocol.subnet import SubnetConfig


def aggregate_payload(state: ModelState, updates: list[Mapping[str, Tensor]]) -> bytes:
    """Clip + mean of dense updates (``cfg.aggregation``), as aggregate bytes (b"" if none)."""
    if not updates:
        return b""
    per_position = state.cfg.aggregation == "per-position"
    return encode_aggregate(outer.aggregate(updates, per_position=per_position), state.spec)


def build_aggregate(
    state: ModelState,
    verdicts: Mapping[int, criteria.Verdict],
    dense: Mapping[int, Mapping[str, Tensor]],
    hotkeys: Mapping[int, str],
    cfg: SubnetConfig,
) -> tuple[Aggregate, bytes]:
    """The ``Aggregate`` of ``state.window`` and its payload; ``state`` is not modified."""
    top = criteria.top_contributors(verdicts, cfg.top_g)
    payload = aggregate_payload(state, [dense[uid] for uid in top])
    preview = state.copy()
    next_hash = preview.apply_payload(state.window, payload, len(top))
    header = Aggregate(
        netuid=cfg.netuid,
        window=state.window,
        contributors=tuple(Contributor(uid=u, hotkey=hotkeys[u], weight=1.0 / len(top)) for u in top),
        base_model_hash=state.hash(),
        next_model_hash=next_hash,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_len=len(payload),
        outer_lr=float(cfg.outer_lr),
    )
    return header, payload
