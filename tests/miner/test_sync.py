"""Catch-up against a fake validator: replay aggregates, load a checkpoint, recover from desync."""

import pytest
import torch

from miner.sync import SyncError, WindowClock, catch_up
from node.fetch import AggregateNotReady, FetchError, ValidatorLink
from node.model_state import ModelState
from protocol.retry import Backoff, retry
from protocol.subnet import SubnetConfig
from tests.miner.fakes import ENDPOINT, FakeChain, FakeValidator

CFG = SubnetConfig(preset="tiny", dataset_hash="")


async def test_replays_aggregates_to_the_network_hash():
    validator = FakeValidator(CFG, windows=3)
    model = await catch_up(ModelState.initial(CFG), ValidatorLink(validator, ENDPOINT, CFG), 3)
    assert model.window == 3
    assert model.hash() == validator.final_hash
    # No checkpoint published: it asks once, then replays every aggregate.
    assert validator.requests == ["/checkpoint/latest", "/aggregate/0", "/aggregate/1", "/aggregate/2"]


async def test_far_behind_loads_the_checkpoint_then_replays():
    validator = FakeValidator(CFG, windows=5, checkpoint_windows=(3,))
    model = await catch_up(ModelState.initial(CFG), ValidatorLink(validator, ENDPOINT, CFG), 5)
    assert model.hash() == validator.final_hash
    assert "/checkpoint/3" in validator.requests
    assert "/aggregate/0" not in validator.requests  # the checkpoint skipped the early windows
    assert validator.requests[-2:] == ["/aggregate/3", "/aggregate/4"]


async def test_diverged_model_reloads_checkpoint():
    validator = FakeValidator(CFG, windows=4, checkpoint_windows=(3,))
    link = ValidatorLink(validator, ENDPOINT, CFG)
    model = await catch_up(ModelState.initial(CFG), link, 3)
    with torch.no_grad():
        next(model.model.parameters()).add_(1.0)  # local corruption
    model = await catch_up(model, link, 4)
    assert model.hash() == validator.final_hash


async def test_divergence_without_checkpoint_is_a_clear_error():
    validator = FakeValidator(CFG, windows=2)
    model = ModelState.initial(CFG)
    with torch.no_grad():
        next(model.model.parameters()).add_(1.0)
    with pytest.raises(SyncError, match="diverged"):
        await catch_up(model, ValidatorLink(validator, ENDPOINT, CFG), 2)


async def test_missing_aggregate_is_not_ready_and_poll_gives_up():
    validator = FakeValidator(CFG, windows=1)
    link = ValidatorLink(validator, ENDPOINT, CFG)
    with pytest.raises(AggregateNotReady):
        await retry(lambda: catch_up(ModelState.initial(CFG), link, 2), timeout=0.05,
                    backoff=Backoff.every(0.01), retry_on=(AggregateNotReady,))


async def test_tampered_checkpoint_bytes_are_refused():
    validator = FakeValidator(CFG, windows=4, checkpoint_windows=(3,))
    validator.corrupt_in_transit = True
    with pytest.raises(FetchError, match="sha256"):
        await catch_up(ModelState.initial(CFG), ValidatorLink(validator, ENDPOINT, CFG), 4)
    # Bytes that match a manifest but not the model hash inside: refused too.
    validator.corrupt_in_transit = False
    data = bytearray(validator.checkpoints[3])
    data[-1] ^= 1
    validator.checkpoints[3] = bytes(data)
    with pytest.raises(SyncError, match="unusable|hash"):
        await catch_up(ModelState.initial(CFG), ValidatorLink(validator, ENDPOINT, CFG), 4)


async def test_window_clock():
    chain = FakeChain(start=39, step=1)
    clock = WindowClock(chain, 20)
    assert await clock.window() == 2  # block 40
    assert await clock.wait_for_window(5, timeout=1) == 100
