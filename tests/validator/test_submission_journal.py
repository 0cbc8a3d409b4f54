"""Accepted submissions are on disk before the 200: a validator restarted mid-window closes
that window with them, keeps their arrival order and still refuses duplicates (409);
corrupt or foreign files are skipped, closed windows pruned, storage failures answered 503."""

from __future__ import annotations

import pytest
from bittensor.sp_core import Keypair

from node.logs import read_metrics
from node.signed_http import SignedClient
from protocol.messages import Aggregate, unpack_envelope
from validator import store as store_mod
from validator.service import SUBMISSIONS_DIR, Validator
from validator.settings import ValidatorSettings
from validator.store import RECORD_MAGIC, SubmissionJournal, decode_record

from .helpers import (
    CFG,
    FakeChain,
    encode_delta,
    fix_secret,
    honest_delta,
    submission_body,
    toy_dataset,
)

VAL = Keypair.create_from_uri("//JournalValidator")
MINERS = [Keypair.create_from_uri(f"//JournalMiner{i}") for i in range(3)]


@pytest.fixture(scope="module")
def ds():
    return toy_dataset()


@pytest.fixture
def chain():
    return FakeChain(CFG.netuid, [VAL.ss58_address] + [m.ss58_address for m in MINERS], [100.0, 0, 0, 0])


def _make(tmp_path, ds, chain) -> Validator:
    settings = ValidatorSettings(netuid=CFG.netuid, state_dir=tmp_path / "v", port=0, poll_interval_s=0.05)
    fix_secret(tmp_path / "v")
    return Validator(chain, VAL, CFG, settings, ds, hotkey=VAL.ss58_address)


async def _submit(v: Validator, i: int, payload: bytes, ds) -> int:
    uid = i + 1
    body = submission_body(MINERS[i], uid, v.state.model.window, payload, base_hash=v.state.model.hash(), ds=ds)
    async with SignedClient(MINERS[i], timeout=10) as client:
        status, _ = await client.post(
            f"https://127.0.0.1:{v.server.port}", "/submit", body,
            receiver_hotkey=VAL.ss58_address, pinned_fingerprint=v.state.identity.fingerprint,
        )
    return status


def _journal(v: Validator) -> SubmissionJournal:
    return SubmissionJournal(v.state.root / SUBMISSIONS_DIR)


async def test_restart_mid_window_keeps_submissions_order_and_duplicates(tmp_path, ds, chain):
    v = _make(tmp_path, ds, chain)
    await v.start()
    try:
        deltas = {i: encode_delta(honest_delta(v.state.model, ds, i + 1)) for i in range(3)}
        assert await _submit(v, 1, deltas[1], ds) == 200  # uid 2 first, then uid 1
        assert await _submit(v, 0, deltas[0], ds) == 200
        assert sorted(p.name for p in (_journal(v).root / "00000000").iterdir()) == ["1.bin", "2.bin"]
    finally:
        await v.close()  # "crash": the window is still open

    store_mod._arrivals.next = 0  # a fresh process counts arrivals from 0 again
    v2 = _make(tmp_path, ds, chain)
    await v2.start()
    try:
        assert [s.uid for s in v2.subs.for_window(0)] == [2, 1]
        assert await _submit(v2, 0, deltas[0], ds) == 409  # duplicate across the restart
        assert await _submit(v2, 2, deltas[2], ds) == 200
        subs = v2.subs.for_window(0)
        assert [s.uid for s in subs] == [2, 1, 3]
        assert subs[0].arrival < subs[1].arrival < subs[2].arrival
        chain.block_now = CFG.blocks_per_window
        await v2.tick()
        assert v2.state.model.window == 1
        header, _ = unpack_envelope(v2.state.store.get_aggregate(0), Aggregate)
        assert {c.uid for c in header.contributors} & {1, 2}, "the window closed without the reloaded updates"
        assert read_metrics(v2.state.root / "metrics.jsonl")[-1]["submissions"] == [2, 1, 3]
        assert _journal(v2).windows() == []  # the closed window is pruned
    finally:
        await v2.close()


async def test_corrupt_and_foreign_files_are_skipped(tmp_path, ds, chain):
    v = _make(tmp_path, ds, chain)
    await v.start()
    try:
        assert await _submit(v, 0, encode_delta(honest_delta(v.state.model, ds, 1)), ds) == 200
    finally:
        await v.close()
    journal = _journal(v)
    good = journal.path(0, 1).read_bytes()
    journal.path(0, 2).write_bytes(good[: len(good) // 2])  # truncated mid-payload
    journal.path(0, 3).write_bytes(b"not a submission at all")
    (journal.root / "00000000" / "4.bin").write_bytes(good)  # uid 1's record filed as uid 4
    (journal.root / "00000007").mkdir()  # a window that is not θ's: pruned on start
    (journal.root / "00000007" / "1.bin").write_bytes(good)

    v2 = _make(tmp_path, ds, chain)
    await v2.start()
    try:
        assert [s.uid for s in v2.subs.for_window(0)] == [1]
        assert journal.windows() == [0]
        assert await _submit(v2, 1, encode_delta(honest_delta(v2.state.model, ds, 2)), ds) == 200
        assert decode_record(journal.path(0, 2), journal.path(0, 2).read_bytes()).envelope  # rewritten whole
    finally:
        await v2.close()


async def test_storage_failure_answers_503_and_keeps_nothing(tmp_path, ds, chain, monkeypatch):
    v = _make(tmp_path, ds, chain)
    await v.start()
    try:
        payload = encode_delta(honest_delta(v.state.model, ds, 1))

        def disk_full(sub) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(v.subs.journal, "write", disk_full)
        assert await _submit(v, 0, payload, ds) == 503
        assert v.subs.count(0) == 0 and v.intake.refusals.get("storage") == 1
        monkeypatch.undo()
        assert await _submit(v, 0, payload, ds) == 200  # not a duplicate: nothing was kept
        assert _journal(v).path(0, 1).exists()
    finally:
        await v.close()


def test_record_format_rejects_garbage(tmp_path):
    with pytest.raises(ValueError, match="magic"):
        decode_record(tmp_path / "1.bin", b"junk")
    with pytest.raises(ValueError, match="metadata"):
        decode_record(tmp_path / "1.bin", RECORD_MAGIC + (5).to_bytes(4, "little") + b"{bad}")
    journal = SubmissionJournal(tmp_path / "subs")
    for w in (1, 2, 3):
        (journal.root / f"{w:08d}").mkdir(parents=True)
    journal.prune(through=2)
    assert journal.windows() == [3]
