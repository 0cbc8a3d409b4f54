"""The miner loop in-process: fake chain + fake validator, real trainer, codec, state and metrics."""

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from chain.errors import ChainError
from miner.service import Miner, MinerError, MinerOptions
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer
from node.commitment import ValidatorCommitment
from node.logs import MetricsWriter, read_metrics
from protocol import codec
from protocol.data import TokenDataset
from protocol.messages import Submission, data_digest, unpack_envelope
from protocol.model import param_spec, preset
from protocol.subnet import SubnetConfig
from protocol.windows import assigned_samples
from tests.miner.fakes import ENDPOINT, HOTKEY, FakeValidator

CFG = SubnetConfig(preset="tiny", dataset_hash="", inner_steps=3, batch_size=2, seq_len=16, blocks_per_window=10)
MINER_HOTKEY = "5" + "M" * 47


@dataclass(frozen=True)
class FakeMetagraph:
    uids: list = field(default_factory=lambda: [0, 1])
    hotkeys: list = field(default_factory=lambda: [HOTKEY, MINER_HOTKEY])
    stake: list = field(default_factory=lambda: [1000.0, 0.0])
    validator_permit: list = field(default_factory=lambda: [True, False])
    axons: list = field(default_factory=lambda: ["127.0.0.1:1", None])
    commitments: dict = field(default_factory=lambda: {
        HOTKEY: ValidatorCommitment(fp=ENDPOINT.fingerprint, crit="c" * 64).to_str()})

    def uid_of(self, hotkey):
        return self.uids[self.hotkeys.index(hotkey)] if hotkey in self.hotkeys else None


class StillChain:
    """Blocks move only when someone waits for one (the miner never races the clock)."""

    def __init__(self, metagraph=None) -> None:
        self.current = 0
        self.mg = metagraph or FakeMetagraph()

    async def block(self):
        return self.current

    async def wait_for_block(self, block, *, timeout):
        self.current = max(self.current, block)
        return self.current

    async def metagraph(self, netuid):
        return self.mg


class Client(FakeValidator):
    """The fake validator's GETs plus a recording POST /submit."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.posts: list[bytes] = []

    async def post(self, url, path, body, *, receiver_hotkey, pinned_fingerprint):
        assert (path, receiver_hotkey, pinned_fingerprint) == ("/submit", HOTKEY, ENDPOINT.fingerprint)
        self.posts.append(body)
        return 200, b'{"accepted": true}'


def _dataset() -> TokenDataset:
    rng = np.random.default_rng(0)
    return TokenDataset.from_arrays("test", rng.integers(0, 256, 20_000).astype("<u2"), rng.integers(0, 256, 2_000).astype("<u2"))


def _miner(tmp_path, client, chain=None, cls=Miner) -> Miner:
    return cls(
        chain=chain or StillChain(), wallet=SimpleNamespace(hotkey=SimpleNamespace(ss58_address=MINER_HOTKEY)),
        cfg=CFG, dataset=_dataset(), trainer=InnerTrainer(preset("tiny"), lr=1e-3),
        store=MinerStateStore(tmp_path / "state"), client=client,
        metrics=MetricsWriter(tmp_path / "state" / "metrics.jsonl"),
        options=MinerOptions(sync_timeout_s=5, poll_interval_s=0.01),
    )


async def test_two_windows_submit_apply_checkpoint_and_resume(tmp_path):
    client = Client(CFG, windows=3)
    miner = _miner(tmp_path, client)
    await miner.run(max_windows=2)
    # Each window: one submission with the right header and a decodable payload.
    assert len(client.posts) == 2
    spec = param_spec(miner.trainer.model)
    for w, body in enumerate(client.posts):
        header, payload = unpack_envelope(body, Submission)
        assert (header.window, header.uid, header.hotkey) == (w, 1, MINER_HOTKEY)
        indices = assigned_samples(CFG.seed_bytes, w, 1, CFG.samples_per_window, _dataset().num_samples(CFG.seq_len))
        assert header.data_digest == data_digest(indices)
        codec.decode(payload, spec, CFG.codec_config())
    # Metrics: the model hash after each window is the network's.
    records = read_metrics(tmp_path / "state" / "metrics.jsonl")
    assert [r["window"] for r in records] == [0, 1]
    assert records[-1]["model_hash"] == miner.model.hash()
    assert records[0]["accepted"] == [0] and records[0]["trained"]
    assert records[0]["loss_first"] > 0 and records[0]["payload_bytes"] > 0
    # Restart: a fresh miner resumes from the checkpoint of θ_2 and the same error feedback.
    again = _miner(tmp_path, client)
    again.restore()
    assert again.model.window == 2 and again.model.hash() == miner.model.hash()
    for name, e in miner.error_feedback.state_dict().items():
        assert (again.error_feedback.state_dict()[name] == e).all()


async def test_late_miner_catches_up_before_training(tmp_path):
    client = Client(CFG, windows=4, checkpoint_windows=(2,))
    chain = StillChain()
    chain.current = 3 * CFG.blocks_per_window  # the network is in window 3
    miner = _miner(tmp_path, client, chain)
    await miner.run(max_windows=1)
    assert "/checkpoint/2" in client.requests
    header, _ = unpack_envelope(client.posts[0], Submission)
    assert header.window == 3
    assert miner.model.window == 4 and miner.model.hash() == client.final_hash


async def test_unregistered_hotkey_is_a_clear_error(tmp_path):
    mg = FakeMetagraph(hotkeys=[HOTKEY, "5" + "Z" * 47])
    miner = _miner(tmp_path, Client(CFG, windows=1), StillChain(mg))
    with pytest.raises(MinerError, match="not registered"):
        await miner.run(max_windows=1)


class FlakyChain(StillChain):
    """The first metagraph read fails, as a dropped chain connection would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def metagraph(self, netuid):
        if self.failures:
            self.failures -= 1
            raise ChainError("connection reset", reason="devnet restarting")
        return await super().metagraph(netuid)


async def test_a_transient_chain_error_costs_a_retry_not_the_miner(tmp_path):
    client = Client(CFG, windows=2)
    chain = FlakyChain()
    miner = _miner(tmp_path, client, chain)
    await miner.run(max_windows=1)
    assert chain.failures == 0 and len(client.posts) == 1
