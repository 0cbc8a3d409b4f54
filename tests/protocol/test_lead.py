"""The lead-validator rule as a table of cases."""

import pytest

from protocol.lead import Candidate, lead_of, serving_validators

A = Candidate(uid=0, stake=10.0, permit=True)
B = Candidate(uid=1, stake=50.0, permit=True)
C = Candidate(uid=2, stake=99.0, permit=False)
D = Candidate(uid=3, stake=50.0, permit=True)  # ties with B: the lower uid leads


@pytest.mark.parametrize(
    "reachable,serving,lead",
    [
        ([], [], None),
        ([A], [0], 0),
        ([A, B, C], [1, 0], 1),  # C has the most stake but no permit
        ([D, B, A], [1, 3, 0], 1),  # equal stake: lower uid first
        ([C], [2], 2),  # first epoch: nobody holds a permit, every reachable one serves
        ([C, Candidate(uid=5, stake=99.0, permit=False)], [2, 5], 2),
    ],
)
def test_serving_and_lead(reachable, serving, lead):
    assert [v.uid for v in serving_validators(reachable)] == serving
    found = lead_of(reachable)
    assert (found.uid if found else None) == lead
