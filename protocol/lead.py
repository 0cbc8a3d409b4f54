"""Which validators serve a window, and which one leads: a rule every node must agree on.

Miners submit to the serving validators, and every node applies the aggregate (and loads
the checkpoints) of the lead. If two nodes picked different leads, they would apply
different aggregates and the network would split, so the rule lives here, once:

- the serving validators are the reachable ones (an endpoint and a commitment on chain)
  that hold a validator permit; before any reachable validator holds one (a subnet's first
  epoch), every reachable validator serves;
- they are ranked by stake, highest first, ties to the lower uid;
- the lead is the first of them (none when no validator is reachable).

Example:
    >>> a, b = Candidate(uid=0, stake=5.0, permit=True), Candidate(uid=3, stake=9.0, permit=False)
    >>> lead_of([a, b]).uid          # b has more stake but no permit
    0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Ranked(Protocol):
    """What the rule reads of a validator: its uid, its stake and whether it holds a permit."""

    @property
    def uid(self) -> int: ...

    @property
    def stake(self) -> float: ...

    @property
    def permit(self) -> bool: ...


V = TypeVar("V", bound=Ranked)


@dataclass(frozen=True)
class Candidate:
    """A plain ``Ranked`` (tests, tools)."""

    uid: int
    stake: float
    permit: bool


def serving_validators(reachable: Sequence[V]) -> list[V]:
    """The permitted reachable validators (all reachable ones if none holds a permit),
    highest stake first, ties to the lower uid."""
    permitted = [v for v in reachable if v.permit]
    return sorted(permitted or reachable, key=lambda v: (-v.stake, v.uid))


def lead_of(reachable: Sequence[V]) -> V | None:
    """The first serving validator, or None when no validator is reachable."""
    serving = serving_validators(reachable)
    return serving[0] if serving else None
