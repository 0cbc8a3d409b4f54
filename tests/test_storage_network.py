"""A subnet with ``storage = "s3"``: a lead validator, a follower and a miner in one event loop,
over pinned HTTPS for submissions and a real S3-protocol server (moto) for aggregates and
checkpoints. Every node ends each window with the same model hash, and no aggregate or
checkpoint byte is served by a validator: the nodes read them from the lead's bucket.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from chain.in_memory import TickingChain
from chain.wallets import create_wallet
from miner.service import Miner, MinerOptions
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer
from node.logs import MetricsWriter, read_metrics
from node.s3_local import READ_KEY, WRITE_KEY, moto_available, running_local_s3
from node.signed_http import SignedClient
from protocol.model import preset
from protocol.retry import poll_until
from tests.miner.test_with_validator import CFG, _dataset
from validator.service import Validator
from validator.settings import ValidatorSettings

pytestmark = pytest.mark.skipif(not moto_available(), reason="needs moto[server] (the dev extra)")

S3_CFG = CFG.model_copy(update={"storage": "s3"})


class TwoValidatorChain(TickingChain):
    """TickingChain with two staked validators (uids 0 and 1; uid 0 holds more and leads)."""

    async def metagraph(self, netuid: int):
        mg = await super().metagraph(netuid)
        n = len(self.hotkeys)
        return dataclasses.replace(mg, stake=[1000.0, 500.0] + [0.0] * (n - 2),
                                   validator_permit=[True, True] + [False] * (n - 2))


async def _closed(state_dir) -> set[int]:
    path = state_dir / "metrics.jsonl"
    return {r["window"] for r in read_metrics(path) if "window" in r} if path.exists() else set()


def s3_settings(root, s3, name: str) -> ValidatorSettings:
    return ValidatorSettings(
        netuid=S3_CFG.netuid, state_dir=root / name, port=0, poll_interval_s=0.1, s3_endpoint=s3.endpoint, s3_bucket=s3.bucket,
        s3_prefix=name, s3_write_key_id=WRITE_KEY[0], s3_write_secret=WRITE_KEY[1],
        s3_read_key_id=READ_KEY[0], s3_read_secret=READ_KEY[1], s3_timeout_s=10,
    )


async def test_lead_follower_and_miner_agree_through_the_bucket(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    wallets = [create_wallet(n, "default", tmp_path / "wallets") for n in ("lead", "follower", "miner")]
    chain = TwoValidatorChain([w.hotkey.ss58_address for w in wallets])
    ds = _dataset()
    with running_local_s3() as s3:
        lead = Validator(chain, wallets[0], S3_CFG, s3_settings(tmp_path, s3, "lead"), ds)
        follower = Validator(chain, wallets[1], S3_CFG, s3_settings(tmp_path, s3, "follower"), ds)
        await lead.start()
        await follower.start()
        client = SignedClient(wallets[2], timeout=10)
        miner = Miner(
            chain=chain, wallet=wallets[2], cfg=S3_CFG, dataset=ds, trainer=InnerTrainer(preset("tiny"), lr=1e-2),
            store=MinerStateStore(tmp_path / "miner"), client=client,
            metrics=MetricsWriter(tmp_path / "miner" / "metrics.jsonl"),
            options=MinerOptions(sync_timeout_s=20, poll_interval_s=0.05),
        )
        stop = asyncio.Event()
        tasks = [asyncio.create_task(v.run(stop=stop)) for v in (lead, follower)]
        try:
            await asyncio.wait_for(miner.run(max_windows=3), timeout=90)
            # the follower reads each aggregate from the bucket after the miner may have: let it catch up
            last = max(r["window"] for r in read_metrics(tmp_path / "miner" / "metrics.jsonl") if "window" in r)
            await poll_until(lambda: _closed(tmp_path / "follower"), lambda ws: last in ws, timeout=30,
                             interval=0.1, on_timeout=lambda ws: AssertionError(f"follower closed only {ws}"))
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
            for v in (lead, follower):
                await v.close()
            await client.close()
    mine = [r for r in read_metrics(tmp_path / "miner" / "metrics.jsonl") if r.get("event") == "window"]
    lead_lines = {r["window"]: r for r in read_metrics(tmp_path / "lead" / "metrics.jsonl")}
    follower_lines = {r["window"]: r for r in read_metrics(tmp_path / "follower" / "metrics.jsonl")}
    assert len(mine) == 3
    for record in mine:
        w = record["window"]
        assert lead_lines[w]["model_hash"] == follower_lines[w]["model_hash"] == record["model_hash"]
    assert any(2 in lead_lines[r["window"]]["contributors"] for r in mine if r["submitted"]), lead_lines
    # nobody downloaded aggregates or checkpoints from a validator; the lead uploaded them once
    for lines in (lead_lines, follower_lines):
        assert sum(r["served_bytes"] for r in lines.values()) == 0, lines
    assert sum(r["uploaded_bytes"] for r in lead_lines.values()) > 0
    assert lead.telemetry.sent_answers == follower.telemetry.sent_answers == 0


def test_local_network_with_s3_starts_a_server_and_points_the_validators_at_it(tmp_path):
    """``swarmtrain local --storage s3``'s wiring without a network: a local S3 server is
    started and stopped with the rest; each validator gets its own prefix and the keys."""
    from swarmtrain.commands.local import subnet_config
    from swarmtrain.local_settings import LocalSettings
    from swarmtrain.localnet import LocalNet, LocalNetConfig, MinerSpec

    subnet = subnet_config(LocalSettings(storage="s3"))
    assert subnet.storage == "s3"
    with LocalNet(LocalNetConfig(out=tmp_path, miners=[MinerSpec("m")], windows=1, subnet=subnet)) as net:
        net.start_s3()
        argv = net.validator_s3_args("validator2")
        assert argv == ["--s3-endpoint", net.s3.endpoint, "--s3-bucket", net.s3.bucket, "--s3-prefix", "validator2"]
        assert net.child_env()["SWARMTRAIN_VALIDATOR_S3_WRITE_KEY_ID"] == WRITE_KEY[0]
        assert net.processes["s3"].alive()
    assert not net.processes["s3"].alive()  # stopped with everything else
