"""The validator against a real devnet subprocess: publish endpoint + commitment, intake,
window close, weights and emission. Slow-ish: ~30-60 s (block time 0.2 s)."""

from __future__ import annotations

from chain.client import Chain
from chain.devnet.testing import run_devnet
from chain.wallets import create_wallet, hotkey_address
from node.signed_http import SignedClient, parse_error
from node.validators import find_validators
from protocol.messages import Aggregate, unpack_envelope
from protocol.retry import poll_until
from protocol.windows import window_start_block
from validator.service import Validator
from validator.settings import ValidatorSettings

from .helpers import CFG, encode_delta, fix_secret, honest_delta, submission_body, toy_dataset

TEMPO = 10
DEVNET_CFG = CFG.model_copy(update={"netuid": 1, "blocks_per_window": 15})


async def _post(wallet, endpoint, body: bytes) -> tuple[int, str]:
    async with SignedClient(wallet, timeout=10) as client:
        status, resp = await client.post(
            endpoint.url, "/submit", body, receiver_hotkey=endpoint.hotkey, pinned_fingerprint=endpoint.fingerprint
        )
    return status, parse_error(resp)[0] if status != 200 else "ok"


async def _wait_incentive(chain: Chain, uid: int, timeout: float) -> float:
    async def incentive() -> float:
        return (await chain.metagraph(DEVNET_CFG.netuid)).incentive[uid]

    return await poll_until(incentive, lambda i: i > 0, timeout=timeout, interval=0.5, on_timeout=None)


async def test_validator_on_devnet(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the SDK writes under ~/.bittensor
    ds = toy_dataset()
    wallets = {n: create_wallet(n, "default", tmp_path / "wallets") for n in ("val", "miner", "stranger")}
    with run_devnet(tmp_path / "devnet", block_time=0.2, tempo=TEMPO) as net:
        async with await Chain.connect(net.url, timeout=20) as chain:
            await chain.register(wallets["val"], 1)
            miner_uid = await chain.register(wallets["miner"], 1)
            await chain.add_stake(wallets["val"], 1, 100.0)
            settings = ValidatorSettings(netuid=DEVNET_CFG.netuid, state_dir=tmp_path / "v", port=0, poll_interval_s=0.1)
            fix_secret(tmp_path / "v")
            v = Validator(chain, wallets["val"], DEVNET_CFG, settings, ds)
            await v.start()
            try:
                await _scenario(chain, v, wallets, miner_uid, ds)
            finally:
                await v.close()


async def _published_endpoint(chain: Chain, timeout: float = 20.0):
    """serve/commit are not awaited to finalization: poll until the chain shows both."""
    async def published():
        return find_validators(await chain.metagraph(DEVNET_CFG.netuid))

    found = await poll_until(published, bool, timeout=timeout, interval=0.2,
                             on_timeout=lambda _: AssertionError("validator endpoint not visible on chain"))
    return found[0]


async def _scenario(chain: Chain, v: Validator, wallets, miner_uid: int, ds) -> None:
    endpoint = await _published_endpoint(chain)  # what a miner does: axon + commitment from the chain
    assert endpoint.hotkey == v.hotkey and endpoint.fingerprint == v.state.identity.fingerprint
    await v.tick()  # close any windows that passed during setup
    state = v.state.model
    w = state.window
    payload = encode_delta(honest_delta(state, ds, miner_uid, DEVNET_CFG, epochs=3), DEVNET_CFG)
    good = submission_body(wallets["miner"].hotkey, miner_uid, w, payload, base_hash=state.hash(), ds=ds, cfg=DEVNET_CFG)
    assert await _post(wallets["miner"], endpoint, good) == (200, "ok")
    stranger = wallets["stranger"].hotkey
    bad = submission_body(stranger, miner_uid, w, payload, base_hash=state.hash(), ds=ds, cfg=DEVNET_CFG)
    assert await _post(wallets["stranger"], endpoint, bad) == (403, "not_registered")

    await chain.wait_for_block(window_start_block(w + 1, DEVNET_CFG.blocks_per_window), timeout=30)
    await v.tick()
    header, _ = unpack_envelope(v.state.store.get_aggregate(w), Aggregate)
    assert [c.uid for c in header.contributors] == [miner_uid]
    assert header.contributors[0].hotkey == hotkey_address(wallets["miner"])
    assert v.last_weights_block is not None
    assert await _wait_incentive(chain, miner_uid, timeout=3 * TEMPO * 0.2 + 10) > 0
