"""Small fakes for miner tests: a validator that publishes aggregates and checkpoints,
and a chain clock. They implement only what the miner calls."""

from __future__ import annotations

import hashlib
import time

import torch

from node.model_state import ModelState
from node.validators import ValidatorEndpoint
from protocol.aggregate_payload import encode_aggregate
from protocol.messages import Aggregate, CheckpointManifest, Contributor, pack_envelope
from protocol.subnet import SubnetConfig

HOTKEY = "5" + "F" * 47
ENDPOINT = ValidatorEndpoint(uid=0, hotkey=HOTKEY, url="https://127.0.0.1:1", fingerprint="ab" * 32, stake=1.0)


class FakeValidator:
    """Publishes Aggregate(w) for w < windows (random small updates) and checkpoints.

    ``get`` has the signature of ``SignedClient.get``; it serves what the real
    validator's GET routes serve.
    """

    def __init__(self, cfg: SubnetConfig, windows: int, checkpoint_windows: tuple[int, ...] = ()) -> None:
        self.cfg = cfg
        self.aggregates: dict[int, bytes] = {}
        self.checkpoints: dict[int, bytes] = {}
        self.hashes: dict[int, str] = {}
        self.corrupt_in_transit = False  # flip a bit of checkpoint bytes after the manifest
        self.requests: list[str] = []
        state = ModelState.initial(cfg)
        gen = torch.Generator().manual_seed(7)
        for w in range(windows):
            if w in checkpoint_windows:
                self.checkpoints[w], self.hashes[w] = state.to_bytes(), state.hash()
            self.aggregates[w] = self._publish(state, gen)
        if windows in checkpoint_windows:
            self.checkpoints[windows], self.hashes[windows] = state.to_bytes(), state.hash()
        self.final_hash = state.hash()

    def _publish(self, state: ModelState, gen: torch.Generator) -> bytes:
        update = {n: torch.randn(s, generator=gen) * 1e-3 for n, s in state.spec.items()}
        payload = encode_aggregate(update, state.spec)
        base, window = state.hash(), state.window
        next_hash = state.apply_payload(window, payload, 1)
        header = Aggregate(
            netuid=self.cfg.netuid, window=window,
            contributors=(Contributor(uid=1, hotkey=HOTKEY, weight=1.0),),
            base_model_hash=base, next_model_hash=next_hash,
            payload_sha256=hashlib.sha256(payload).hexdigest(), payload_len=len(payload), outer_lr=1.0,
        )
        return pack_envelope(header, payload)

    def manifest(self, window: int) -> CheckpointManifest:
        data = self.checkpoints[window]
        return CheckpointManifest(
            netuid=self.cfg.netuid, window=window, model_hash=self.hashes[window], config={"preset": self.cfg.preset},
            subnet_config_hash=self.cfg.config_hash(), file_sha256=hashlib.sha256(data).hexdigest(),
            file_size=len(data), created_at=time.time(),
        )

    async def get(self, url: str, path: str, *, receiver_hotkey: str | None, pinned_fingerprint: str, **limits: object) -> tuple[int, bytes]:
        assert receiver_hotkey == HOTKEY and pinned_fingerprint == ENDPOINT.fingerprint
        self.requests.append(path)
        parts = path.strip("/").split("/")
        if parts[0] == "aggregate" and int(parts[1]) in self.aggregates:
            return 200, self.aggregates[int(parts[1])]
        if path == "/checkpoint/latest" and self.checkpoints:
            return 200, self.manifest(max(self.checkpoints)).model_dump_json().encode()
        if parts[0] == "checkpoint" and parts[1].isdigit() and int(parts[1]) in self.checkpoints:
            data = self.checkpoints[int(parts[1])]
            return 200, (data[:-1] + bytes([data[-1] ^ 1])) if self.corrupt_in_transit else data
        return 404, b'{"code":"not_found","reason":"not published"}'


class FakeChain:
    """A chain whose block advances by ``step`` every time it is read."""

    def __init__(self, start: int = 0, step: int = 1) -> None:
        self.current = start
        self.step = step

    async def block(self) -> int:
        self.current += self.step
        return self.current

    async def wait_for_block(self, block: int, *, timeout: float) -> int:
        self.current = max(self.current, block)
        return self.current
