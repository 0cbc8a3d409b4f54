"""A miner waits out outages of any length and resumes by itself: the chain, the lead validator
(falling back to another one), a full disk. The outages here are short, but the miner's
settings make the unbounded waits run: one failure in a row would otherwise end it
(``max_consecutive_failures=1``) and the status lines come every 0.2 s instead of every minute."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from chain.errors import ChainConnectionError
from miner.service import Miner, MinerOptions
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer
from node.commitment import ValidatorCommitment
from node.logs import MetricsWriter, read_metrics
from node.s3_local import WRITE_KEY, moto_available, running_local_s3
from node.signed_http import NodeHttpError
from node.storage import ObjectStore, StoreLocation, aggregate_name
from protocol import files
from protocol.model import preset
from protocol.ports import free_port
from protocol.retry import Backoff
from tests.miner.fakes import ENDPOINT, HOTKEY
from tests.miner.test_service import CFG, MINER_HOTKEY, Client, FakeMetagraph, StillChain, _dataset
from tests.node.test_disk_errors import _enospc

OPTIONS = MinerOptions(sync_timeout_s=5, poll_interval_s=0.01, max_consecutive_failures=1, outage_retry_cap_s=0.05,
                       status_every_s=0.2, sync_quiet_s=0.1)
BACKUP_HOTKEY = "5" + "B" * 47
BACKUP_URL = "https://127.0.0.1:2"


def _miner(tmp_path, client, chain) -> Miner:
    miner = Miner(
        chain=chain, wallet=SimpleNamespace(hotkey=SimpleNamespace(ss58_address=MINER_HOTKEY)),
        cfg=CFG, dataset=_dataset(), trainer=InnerTrainer(preset("tiny"), lr=1e-3),
        store=MinerStateStore(tmp_path / "state"), client=client,
        metrics=MetricsWriter(tmp_path / "state" / "metrics.jsonl"), options=OPTIONS,
    )
    miner.link_retry_s = 0.05  # one GET gives up on a dead validator at once (10 s in production)
    return miner


def _lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


class DownChain(StillChain):
    """Every call fails with ChainConnectionError while ``down`` > 0 (each call uses one up)."""

    url = "devnet://127.0.0.1:9"

    def __init__(self, down: int = 0, metagraph=None) -> None:
        super().__init__(metagraph)
        self.down = down
        self.refused = 0

    def _check(self) -> None:
        if self.down > 0:
            self.down -= 1
            self.refused += 1
            raise ChainConnectionError("read block: chain unreachable", reason="Connection refused")

    async def block(self):
        self._check()
        return await super().block()

    async def wait_for_block(self, block, *, timeout):
        self._check()
        return await super().wait_for_block(block, timeout=timeout)

    async def metagraph(self, netuid):
        self._check()
        return await super().metagraph(netuid)


async def test_a_chain_outage_is_waited_out_with_status_lines_and_the_miner_resumes(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="swarmtrain.miner")
    client = Client(CFG, windows=3)
    chain = DownChain()
    miner = _miner(tmp_path, client, chain)
    miner.restore()
    await miner.one_window()
    chain.down = 30  # 30 refused calls in a row: far past max_consecutive_failures=1
    await miner.run(max_windows=1)
    assert chain.refused == 30 and chain.down == 0
    records = read_metrics(tmp_path / "state" / "metrics.jsonl")
    assert [r["window"] for r in records] == [0, 1] and records[-1]["model_hash"] == miner.model.hash()
    waiting = _lines(caplog, "waiting for the chain at devnet://127.0.0.1:9 since")
    assert waiting and "Connection refused" in waiting[0] and "resumes by itself" in waiting[0]
    assert len(_lines(caplog, "the chain at devnet://127.0.0.1:9 is back after")) == 1


class DeadLead(Client):
    """The lead (uid 0) does not answer for ``dead`` GETs (``None``: never); a second validator
    (uid 2, ``BACKUP_URL``) serves the same aggregates. Submissions go to both."""

    def __init__(self, *a, dead: int | None = None, **k) -> None:
        super().__init__(*a, **k)
        self.dead = dead
        self.served_by: list[str] = []

    async def get(self, url, path, *, receiver_hotkey, pinned_fingerprint, **limits):
        if url == ENDPOINT.url and (self.dead is None or self.dead > 0):
            self.dead = None if self.dead is None else self.dead - 1
            raise NodeHttpError(f"GET {url}{path} failed: ClientConnectorError: Connection refused")
        self.served_by.append(url)
        return await super().get(url, path, receiver_hotkey=HOTKEY, pinned_fingerprint=ENDPOINT.fingerprint)

    async def post(self, url, path, body, *, receiver_hotkey, pinned_fingerprint):
        self.posts.append(body)
        return 200, b'{"accepted": true}'


@dataclass(frozen=True)
class TwoValidators(FakeMetagraph):
    uids: list = field(default_factory=lambda: [0, 1, 2])
    hotkeys: list = field(default_factory=lambda: [HOTKEY, MINER_HOTKEY, BACKUP_HOTKEY])
    stake: list = field(default_factory=lambda: [1000.0, 0.0, 500.0])
    validator_permit: list = field(default_factory=lambda: [True, False, True])
    axons: list = field(default_factory=lambda: ["127.0.0.1:1", None, "127.0.0.1:2"])
    commitments: dict = field(default_factory=lambda: {
        h: ValidatorCommitment(fp=ENDPOINT.fingerprint, crit="c" * 64).to_str() for h in (HOTKEY, BACKUP_HOTKEY)})


async def test_a_dead_lead_is_said_and_another_validator_serves_the_model(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="swarmtrain.miner")
    client = DeadLead(CFG, windows=3)
    miner = _miner(tmp_path, client, DownChain(metagraph=TwoValidators()))
    await miner.run(max_windows=2)
    assert miner.model.window == 2 and miner.model.hash() == FakeMetagraphHash.of(client)
    assert set(client.served_by) == {BACKUP_URL}
    fallback = _lines(caplog, "synced from another validator: the lead does not answer")
    assert fallback and "Connection refused" in fallback[0] and "validator=2" in fallback[0]


@pytest.mark.skipif(not moto_available(), reason="needs moto[server] (the dev extra)")
async def test_with_s3_storage_the_fallback_reads_the_other_validators_bucket(tmp_path, caplog):
    """storage = s3: the lead's bucket does not answer; the model comes from the bucket the
    second validator's commitment names (through node.fetch.Links), nothing over HTTPS."""
    caplog.set_level(logging.WARNING, logger="swarmtrain.miner")
    cfg = CFG.model_copy(update={"storage": "s3"})
    client = DeadLead(cfg, windows=3)
    with running_local_s3() as s3:
        backup = s3.location("backup")
        store = ObjectStore(StoreLocation(endpoint=s3.endpoint, bucket=s3.bucket, prefix="backup"),
                            key_id=WRITE_KEY[0], secret=WRITE_KEY[1], timeout_s=10)
        try:
            for w, envelope in client.aggregates.items():
                await store.put(store.location.key(aggregate_name(w)), envelope)
        finally:
            await store.close()
        dead = StoreLocation(endpoint=f"http://127.0.0.1:{free_port()}", bucket=s3.bucket, prefix="lead")
        commitments = {h: ValidatorCommitment(fp=ENDPOINT.fingerprint, crit="c" * 64, st=loc).to_str()
                       for h, loc in ((HOTKEY, dead), (BACKUP_HOTKEY, backup))}
        miner = Miner(
            chain=DownChain(metagraph=TwoValidators(commitments=commitments)),
            wallet=SimpleNamespace(hotkey=SimpleNamespace(ss58_address=MINER_HOTKEY)), cfg=cfg, dataset=_dataset(),
            trainer=InnerTrainer(preset("tiny"), lr=1e-3), store=MinerStateStore(tmp_path / "state"), client=client,
            metrics=MetricsWriter(tmp_path / "state" / "metrics.jsonl"), options=OPTIONS,
        )
        miner.link_retry_s = 0.05
        await miner.run(max_windows=2)
    assert miner.model.window == 2 and miner.model.hash() == FakeMetagraphHash.of(client)
    assert client.served_by == [] and miner.links.bytes_read > 0  # every byte of θ came from the bucket
    fallback = _lines(caplog, "synced from another validator: the lead does not answer")
    assert fallback and "validator=2" in fallback[0] and dead.endpoint in fallback[0]  # the lead bucket's error


class FakeMetagraphHash:
    @staticmethod
    def of(client: Client) -> str:
        """θ_2's hash as the fake validator published it (its aggregates 0 and 1 applied)."""
        from node.model_state import ModelState
        from protocol.messages import Aggregate, unpack_envelope

        model = ModelState.initial(CFG)
        for w in (0, 1):
            model.apply_aggregate(*unpack_envelope(client.aggregates[w], Aggregate))
        return model.hash()


async def test_a_lead_down_with_no_other_validator_is_waited_for(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="swarmtrain.miner")
    client = DeadLead(CFG, windows=3, dead=0)
    miner = _miner(tmp_path, client, DownChain())
    miner.restore()
    await miner.one_window()
    client.dead = 25  # the only validator is down for 25 tries: the miner says so and waits
    await miner.run(max_windows=1)
    assert client.dead == 0 and miner.model.window == 2
    waiting = _lines(caplog, "waiting for the model of window 2 at the validators since")
    assert waiting and "validator uid 0 at https://127.0.0.1:1 (lead)" in waiting[0] and "Connection refused" in waiting[0]
    assert _lines(caplog, "the model of window 2 at the validators is back after")


async def test_a_full_disk_costs_a_checkpoint_not_the_miner_and_it_recovers(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="swarmtrain.miner")
    client = Client(CFG, windows=3)
    miner = _miner(tmp_path, client, DownChain())
    real_save, saves = miner.store.save, []

    def save_on_a_full_disk_once(state):
        saves.append(state.window)
        if len(saves) > 1:
            return real_save(state)
        with monkeypatch.context() as m:
            m.setattr(files.os, "fsync", _enospc)
            return real_save(state)

    monkeypatch.setattr(miner.store, "save", save_on_a_full_disk_once)
    await miner.run(max_windows=2)
    assert saves == [1, 2] and miner.store.load(CFG).window == 2  # type: ignore[union-attr]
    leftovers = [p.name for p in (tmp_path / "state").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    full = _lines(caplog, "waiting for room to write the miner's state")
    assert len(full) == 1 and "ckpt-0000000001" in full[0] and "No space left on device" in full[0]
    assert "free space" in full[0] and _lines(caplog, "is back after")



async def test_a_restarted_miner_waits_for_its_chain_and_a_first_start_does_not(tmp_path, monkeypatch, caplog):
    from chain import client as chain_client
    from miner.launch import restart_outage

    caplog.set_level(logging.WARNING, logger="swarmtrain.miner")
    tries = []

    async def connect(network, *, timeout):
        tries.append(network)
        if len(tries) < 4:
            raise ChainConnectionError(f"no devnet at {network}", reason="Connection refused")
        return "chain"

    monkeypatch.setattr(chain_client.Chain, "connect", staticmethod(connect))
    with pytest.raises(ChainConnectionError):  # no state yet: an error line, most likely a wrong endpoint
        await chain_client.connect_when_up("devnet://127.0.0.1:9", timeout=1, outage=restart_outage("x", None))
    outage = restart_outage("devnet://127.0.0.1:9", tmp_path / "ckpt-0000000003")
    assert outage is not None
    outage_fast = chain_client.wait_out  # the same loop, with the test's pace
    monkeypatch.setattr(chain_client, "wait_out", lambda call, **k: outage_fast(call, **k, backoff=Backoff.every(0.01)))
    assert await chain_client.connect_when_up("devnet://127.0.0.1:9", timeout=1, outage=outage) == "chain"
    assert len(tries) == 4
    assert _lines(caplog, "waiting for the chain at devnet://127.0.0.1:9 since")
    assert _lines(caplog, "the chain at devnet://127.0.0.1:9 is back after")


class LazyLead(Client):
    """The fake lead, publishing each aggregate only when first asked for (building one costs
    about a second: the test needs only the few windows it runs)."""

    def __init__(self) -> None:
        import torch

        from node.model_state import ModelState

        super().__init__(CFG, windows=0)
        self.state, self.gen = ModelState.initial(CFG), torch.Generator().manual_seed(7)

    async def get(self, url, path, *, receiver_hotkey, pinned_fingerprint, **limits):
        parts = path.strip("/").split("/")
        if parts[0] == "aggregate":
            while len(self.aggregates) <= int(parts[1]):
                self.aggregates[len(self.aggregates)] = self._publish(self.state, self.gen)
        return await super().get(url, path, receiver_hotkey=receiver_hotkey, pinned_fingerprint=pinned_fingerprint)


class RealClock:
    """Blocks from a real devnet (through ``chain.client.Chain``), counted from ``offset`` so the
    miner starts at window 0 (the fake lead publishes few aggregates); the fake lead's metagraph."""

    def __init__(self, chain, offset: int, metagraph=None) -> None:
        self.chain, self.offset, self.mg, self.url = chain, offset, metagraph or FakeMetagraph(), chain.url

    async def block(self):
        return await self.chain.block() - self.offset

    async def wait_for_block(self, block, *, timeout):
        return await self.chain.wait_for_block(block + self.offset, timeout=timeout) - self.offset

    async def metagraph(self, netuid):
        return self.mg


async def test_a_killed_devnet_is_waited_out_and_the_miner_resumes_by_itself(tmp_path, caplog):
    """A real devnet killed with -9 and restarted seconds later. The chain client gives up after
    1 s per call and one failure in a row would end the miner: only the unbounded wait carries
    it over (the path a five-minute outage takes)."""
    import asyncio

    from chain.client import Chain
    from chain.devnet.testing import run_devnet

    caplog.set_level(logging.WARNING, logger="swarmtrain.miner")
    client = LazyLead()
    with run_devnet(tmp_path / "devnet", block_time=0.3) as devnet:
        chain = await Chain.connect(devnet.url, timeout=1.0)
        try:
            miner = _miner(tmp_path, client, RealClock(chain, offset=await chain.block()))
            running = asyncio.create_task(miner.run())
            while not read_metrics(tmp_path / "state" / "metrics.jsonl"):
                await asyncio.sleep(0.2)
                assert not running.done(), running
            await asyncio.to_thread(devnet.kill9)
            await asyncio.sleep(4.0)  # down for a few seconds: > 3 timed-out chain calls
            assert not running.done()
            await asyncio.to_thread(devnet.restart)
            await asyncio.to_thread(devnet.wait_ready)
            resumed_after = len(read_metrics(tmp_path / "state" / "metrics.jsonl"))
            while len(read_metrics(tmp_path / "state" / "metrics.jsonl")) < resumed_after + 2:
                await asyncio.sleep(0.2)
                assert not running.done(), running
            running.cancel()
        finally:
            await chain.close()
    records = read_metrics(tmp_path / "state" / "metrics.jsonl")
    assert records[-1]["trained"] and records[-1]["model_hash"] == miner.model.hash()
    waiting = _lines(caplog, f"waiting for the chain at {devnet.url} since")
    assert waiting and _lines(caplog, f"the chain at {devnet.url} is back after")
