"""The fetch client: checks what it is sent, retries transient failures, 404 = not published."""

import pytest

from node.fetch import AggregateNotReady, FetchError, ValidatorLink
from node.signed_http import NodeHttpError
from protocol.retry import Backoff
from protocol.subnet import SubnetConfig
from tests.miner.fakes import ENDPOINT, FakeValidator

CFG = SubnetConfig(preset="tiny", dataset_hash="")


class Flaky:
    """Answers ``failures`` (an exception or a status) before handing over to ``inner``."""

    def __init__(self, inner, failures) -> None:
        self.inner, self.failures, self.calls = inner, list(failures), 0

    async def get(self, url, path, *, receiver_hotkey, pinned_fingerprint, **limits):
        self.calls += 1
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure, b'{"code":"busy","reason":"later"}'
        return await self.inner.get(url, path, receiver_hotkey=receiver_hotkey, pinned_fingerprint=pinned_fingerprint, **limits)


async def test_transient_failures_are_retried_then_the_aggregate_is_checked():
    validator = FakeValidator(CFG, windows=1)
    client = Flaky(validator, [NodeHttpError("connection reset"), 503, 429])
    header, payload = await ValidatorLink(client, ENDPOINT, CFG, backoff=Backoff(first=0.01)).aggregate(0)
    assert header.window == 0 and payload and client.calls == 4


async def test_a_final_refusal_or_a_lasting_outage_is_an_error():
    validator = FakeValidator(CFG, windows=1)
    with pytest.raises(FetchError, match="403"):
        await ValidatorLink(Flaky(validator, [403]), ENDPOINT, CFG).aggregate(0)
    down = Flaky(validator, [NodeHttpError("down")] * 1000)
    with pytest.raises(NodeHttpError):
        await ValidatorLink(down, ENDPOINT, CFG, retry_s=0.05).aggregate(0)
    with pytest.raises(AggregateNotReady):
        await ValidatorLink(validator, ENDPOINT, CFG).aggregate(1)


async def test_an_aggregate_for_another_window_or_subnet_is_refused():
    validator = FakeValidator(CFG, windows=2)
    validator.aggregates[1] = validator.aggregates[0]  # served under the wrong window
    link = ValidatorLink(validator, ENDPOINT, CFG)
    with pytest.raises(FetchError, match="asked for aggregate 1, got window 0"):
        await link.aggregate(1)
    with pytest.raises(FetchError, match="netuid"):
        ValidatorLink(validator, ENDPOINT, SubnetConfig(netuid=7)).parse_aggregate(0, validator.aggregates[0])
    with pytest.raises(FetchError, match="malformed"):
        link.parse_aggregate(0, b"\x00\x00\x00\x05junk")
