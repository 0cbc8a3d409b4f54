"""Shared test pieces: a tiny subnet config, a small learnable dataset, honest/garbage miners, a fake chain."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bittensor.sp_core import Keypair

from chain.errors import NotRegisteredError
from chain.types import Metagraph, SubnetHyperparams
from node.model_state import ModelState
from protocol import codec
from protocol.data import TokenDataset
from protocol.messages import Submission, data_digest, pack_envelope
from protocol.model import lm_loss
from protocol.subnet import SubnetConfig
from protocol.windows import assigned_samples

# eval_samples = samples_per_window: own-vs-random gains differ by ~1 % early in training, so
# the whole assignment is evaluated to keep honest miners clear of the noise.
CFG = SubnetConfig(
    netuid=7, preset="tiny", seq_len=32, batch_size=4, inner_steps=8, inner_lr=3e-3,
    blocks_per_window=10, codec_chunk=32, codec_topk=128, eval_samples=32,
    max_evaluations=8, top_g=4, checkpoint_every=2,
)


def fix_secret(state_dir: Path, secret: bytes = b"fixed-test-secret".ljust(32, b".")) -> None:
    """Write the validator's evaluation secret up front so a test's random draws repeat."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "secret.key").write_bytes(secret)


def toy_dataset(seq_len: int = 32, samples: int = 2400, val_samples: int = 300) -> TokenDataset:
    """Learnable, deterministic tokens whose samples differ: each seq_len block draws from its
    own 12-byte alphabet (out of a fixed set of 128 bytes). Training on a sample's own block
    helps it clearly more than a random block (own ~5 % vs random ~3 % relative gain for the
    tiny preset), so scoring tests stay clear of evaluation noise."""
    rng = np.random.default_rng(1234)
    common = rng.choice(256, size=128, replace=False)
    skew = np.linspace(2, 1, 12) / np.linspace(2, 1, 12).sum()

    def stream(n: int) -> np.ndarray:
        blocks = [rng.choice(rng.choice(common, size=12, replace=False), size=seq_len, p=skew) for _ in range(n)]
        return np.concatenate(blocks + [blocks[-1][:1]]).astype(np.uint16)

    return TokenDataset.from_arrays("toy", stream(samples), stream(val_samples))


def honest_delta(
    state: ModelState, ds: TokenDataset, uid: int, cfg: SubnetConfig = CFG, *, epochs: int = 1
) -> dict[str, torch.Tensor]:
    """Δ = θ_w − θ_local after ``epochs`` x H AdamW steps on the uid's assigned samples."""
    torch.manual_seed(uid)
    model = state.clone_model().train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.inner_lr, weight_decay=0.0)
    idx = assigned_samples(cfg.seed_bytes, state.window, uid, cfg.samples_per_window, ds.num_samples(cfg.seq_len))
    for step in [s for _ in range(epochs) for s in range(cfg.inner_steps)]:
        batch = ds.batch(idx[step * cfg.batch_size : (step + 1) * cfg.batch_size], cfg.seq_len)
        opt.zero_grad()
        lm_loss(model, batch).backward()
        opt.step()
    local = dict(model.named_parameters())
    return {n: (p - local[n]).detach() for n, p in state.params().items()}


def encode_delta(delta: dict[str, torch.Tensor], cfg: SubnetConfig = CFG) -> bytes:
    return codec.encode(codec.compress(delta, cfg.codec_config()), cfg.codec_config())


def garbage_delta(state: ModelState, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=gen) * 0.5 for n, s in state.spec.items()}


def submission_body(
    kp: Keypair, uid: int, window: int, payload: bytes, *, base_hash: str, ds: TokenDataset,
    cfg: SubnetConfig = CFG, digest: str | None = None, netuid: int | None = None,
) -> bytes:
    idx = assigned_samples(cfg.seed_bytes, window, uid, cfg.samples_per_window, ds.num_samples(cfg.seq_len))
    header = Submission(
        netuid=cfg.netuid if netuid is None else netuid, window=window, uid=uid, hotkey=kp.ss58_address,
        base_model_hash=base_hash, data_digest=digest or data_digest(idx),
        payload_sha256=hashlib.sha256(payload).hexdigest(), payload_len=len(payload), sent_at=1.0,
    )
    return pack_envelope(header, payload)


@dataclass
class FakeChain:
    """The few ``Chain`` methods the validator calls, over an in-memory metagraph."""

    netuid: int
    hotkeys: list[str]
    stake: list[float]
    block_now: int = 0
    tempo: int = 20
    axons: dict[str, str] = field(default_factory=dict)
    commitments: dict[str, str] = field(default_factory=dict)
    weights: list[tuple[int, dict[int, float]]] = field(default_factory=list)

    async def block(self) -> int:
        return self.block_now

    async def metagraph(self, netuid: int) -> Metagraph:
        n = len(self.hotkeys)
        return Metagraph(
            netuid=netuid, block=self.block_now, uids=list(range(n)), hotkeys=list(self.hotkeys),
            coldkeys=[""] * n, stake=list(self.stake), validator_permit=[s > 0 for s in self.stake],
            axons=[self.axons.get(h) for h in self.hotkeys], last_update=[0] * n, incentive=[0.0] * n,
            dividends=[0.0] * n, emission=[0.0] * n, consensus=[0.0] * n, commitments=dict(self.commitments),
        )

    async def hyperparameters(self, netuid: int) -> SubnetHyperparams:
        fields = {f: 0 for f in SubnetHyperparams.__dataclass_fields__}
        fields.update(tempo=self.tempo, max_weights_limit=65535, max_allowed_validators=64)
        return SubnetHyperparams(**fields)

    def _hotkey(self, wallet: Any) -> str:
        return wallet.ss58_address

    async def serve(self, wallet: Any, netuid: int, ip: str, port: int) -> None:
        if self._hotkey(wallet) not in self.hotkeys:
            raise NotRegisteredError("not registered")
        self.axons[self._hotkey(wallet)] = f"{ip}:{port}"

    async def commit(self, wallet: Any, netuid: int, data: str) -> None:
        self.commitments[self._hotkey(wallet)] = data

    async def set_weights(self, wallet: Any, netuid: int, weights: dict[int, float]) -> None:
        self.weights.append((self.block_now, dict(weights)))
