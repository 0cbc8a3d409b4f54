"""The S3 backend against a real S3-protocol server (moto's server mode) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import pytest

from node import storage
from node.checkpoints import CheckpointStore
from node.commitment import MAX_COMMITMENT_BYTES, ValidatorCommitment, parse_commitment
from node.fetch import FetchError, Links
from node.s3_local import READ_KEY, WRITE_KEY, moto_available, running_local_s3
from node.signed_http import ResponseTooLarge
from node.storage import ObjectStore, StorageError, StoreGetter, StoreLocation, reader_for
from node.validators import ValidatorEndpoint
from protocol.limits import response_limits
from protocol.messages import CheckpointManifest
from protocol.retry import poll_until
from protocol.subnet import SubnetConfig
from validator.mirror import Mirror, make_mirror
from validator.settings import ValidatorSettings

pytestmark = pytest.mark.skipif(not moto_available(), reason="needs moto[server] (the dev extra)")


@pytest.fixture(scope="module")
def s3():
    with running_local_s3() as server:
        yield server


def writer(s3, prefix: str) -> ObjectStore:
    loc = StoreLocation(endpoint=s3.endpoint, bucket=s3.bucket, prefix=prefix)
    return ObjectStore(loc, key_id=WRITE_KEY[0], secret=WRITE_KEY[1], timeout_s=10)


async def test_put_get_list_delete_and_missing(s3):
    store = writer(s3, "basic")
    try:
        await store.put("basic/a.bin", b"x" * 1000)
        assert await store.get("basic/a.bin") == b"x" * 1000
        assert await store.get("basic/none.bin") is None
        assert await store.exists("basic/a.bin") and not await store.exists("basic/none.bin")
        assert await store.list_keys("basic/") == ["basic/a.bin"]
        await store.delete(["basic/a.bin", "basic/never-there.bin"])
        assert await store.get("basic/a.bin") is None
        assert store.bytes_out == 1000 and store.bytes_in == 1000
    finally:
        await store.close()


async def test_large_objects_go_up_in_parts(s3, monkeypatch):
    monkeypatch.setattr(storage, "MULTIPART_PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part
    store = writer(s3, "big")
    data = bytes(range(256)) * (11 * 1024 * 1024 // 256 + 3)
    try:
        await store.put("big/ckpt.bin", data)
        assert hashlib.sha256(await store.get("big/ckpt.bin")).digest() == hashlib.sha256(data).digest()
    finally:
        await store.close()


async def test_errors_are_storage_errors_naming_the_object(s3):
    wrong_bucket = ObjectStore(StoreLocation(endpoint=s3.endpoint, bucket="no-such-bucket"),
                               key_id=WRITE_KEY[0], secret=WRITE_KEY[1], timeout_s=5)
    unreachable = ObjectStore(StoreLocation(endpoint="http://127.0.0.1:1", bucket="b-1"), timeout_s=1,
                              key_id="k", secret="s")
    anonymous = ObjectStore(StoreLocation(endpoint=s3.endpoint, bucket=s3.bucket), anonymous=True, timeout_s=5)
    private = writer(s3, "private")
    try:
        await private.put("private/x", b"secret")
        with pytest.raises(StorageError, match="no-such-bucket"):
            await wrong_bucket.get("x")
        with pytest.raises(StorageError, match="127.0.0.1:1"):
            await unreachable.get("x")
        with pytest.raises(StorageError):  # the bucket is not public: unsigned reads are refused
            await anonymous.get("private/x")
    finally:
        for store in (wrong_bucket, unreachable, anonymous, private):
            await store.close()


async def test_getter_answers_the_validator_routes(s3):
    store = writer(s3, "routes")
    getter = StoreGetter(s3.location("routes"))
    try:
        await store.put("routes/aggregates/00000007.bin", b"agg7")
        await store.put("routes/checkpoints/latest.json", b"{}")
        await store.put("routes/checkpoints/00000005.safetensors", b"ckpt5")
        assert await getter.get("", "/aggregate/7") == (200, b"agg7")
        assert await getter.get("", "/aggregate/8") == (404, b"")
        assert await getter.get("", "/checkpoint/latest") == (200, b"{}")
        assert await getter.get("", "/checkpoint/5") == (200, b"ckpt5")
        assert await getter.get("", "/submit") == (404, b"")
    finally:
        await store.close()
        await getter.close()


async def test_bucket_answers_have_the_same_bounds_as_the_validators(s3):
    """A bucket is read with the bounds of an HTTPS answer: an object over the subnet's
    aggregate bound, or bigger than its manifest says, is refused without being read whole;
    checkpoint bytes are hashed as they stream in."""
    cfg = SubnetConfig(preset="tiny", dataset_hash="", storage="s3")
    limits = response_limits(cfg)
    store = writer(s3, "bounds")
    endpoint = ValidatorEndpoint(uid=3, hotkey="hk", url="https://127.0.0.1:9", fingerprint="00" * 32, stake=1.0,
                                 storage=s3.location("bounds"))
    links = Links(client=None, cfg=cfg, retry_s=1.0)  # s3: HTTPS is never used
    good = b"ckpt" * 1000
    try:
        await store.put("bounds/aggregates/00000001.bin", b"\0" * (limits.aggregate + 1))
        await store.put("bounds/checkpoints/00000002.safetensors", good)
        link = links.to(endpoint)
        with pytest.raises(FetchError, match=f"validator uid 3: .*{limits.aggregate}-byte limit"):
            await link.aggregate_envelope(1)
        assert links.bytes_read == 0  # refused on the announced size: nothing read
        assert await link.checkpoint_bytes(_manifest(2, good)) == good
        short = _manifest(2, good[:-1])  # the bucket holds one byte more than the manifest says
        with pytest.raises(FetchError, match=f"{len(good) - 1}-byte limit"):
            await link.checkpoint_bytes(short)
        seen: list[bytes] = []
        assert await store.get("bounds/checkpoints/00000002.safetensors", max_bytes=len(good),
                               on_chunk=seen.append) == good
        assert b"".join(seen) == good
    finally:
        await store.close()
        await links.close()


class _Endless:
    """A body stream that sends more than its object announced (a hostile store)."""

    def __init__(self) -> None:
        self.reads = 0

    async def read(self, amt: int) -> bytes:
        self.reads += 1
        return b"\0" * amt


async def test_a_bucket_body_past_the_bound_is_cut_off_there():
    store = ObjectStore(StoreLocation(endpoint="http://127.0.0.1:9", bucket="abc"), anonymous=True)
    stream = _Endless()
    with pytest.raises(ResponseTooLarge, match="cut off"):
        await store._read(stream, "s3 object", 3 * storage.READ_CHUNK + 1, None)
    assert stream.reads == 4 and store.bytes_in == 3 * storage.READ_CHUNK  # stopped at the bound


def test_commitment_carries_the_read_location_within_the_chain_bound():
    # R2's shapes: a 32-hex account in the endpoint, 32-char key id, 64-char secret
    r2_like = StoreLocation(endpoint="https://" + "a" * 32 + ".r2.cloudflarestorage.com", bucket="b" * 32,
                            key_id="k" * 32, secret="s" * 64)
    c = ValidatorCommitment(fp="ab" * 32, crit="cd" * 32, st=r2_like)
    text = c.to_str()
    assert len(text.encode()) <= MAX_COMMITMENT_BYTES
    assert parse_commitment(text) == c and parse_commitment(text).st.secret == "s" * 64
    assert '"st":{"e":' in text  # short keys on chain
    assert "st" not in ValidatorCommitment(fp="ab" * 32, crit="cd" * 32).to_str()  # unchanged without a store
    too_long = StoreLocation(**{**r2_like.model_dump(), "prefix": "sn1", "region": "auto"})
    with pytest.raises(ValueError, match="shorten"):
        ValidatorCommitment(fp="ab" * 32, crit="cd" * 32, st=too_long).to_str()


def test_reader_follows_the_subnet_config():
    loc = StoreLocation(endpoint="http://127.0.0.1:9", bucket="abc")
    assert reader_for("validator", loc) is None
    assert isinstance(reader_for("s3", loc), StoreGetter)
    with pytest.raises(StorageError, match="names no object store"):
        reader_for("s3", None)


def _manifest(window: int, data: bytes) -> CheckpointManifest:
    return CheckpointManifest(netuid=1, window=window, model_hash="a" * 64, config={"dim": 8},
                              subnet_config_hash="b" * 64, file_sha256=hashlib.sha256(data).hexdigest(),
                              file_size=len(data), created_at=time.time())


async def test_mirror_uploads_in_order_prunes_and_resyncs(s3, tmp_path):
    loc = s3.location("mirror")
    mirror = Mirror(writer(s3, "mirror"), read_location=loc, keep_aggregates=2, keep_checkpoints=2)
    getter = StoreGetter(loc)
    mirror.start()
    try:
        for w in range(4):
            mirror.aggregate(w, f"agg{w}".encode())
        for w in (0, 2, 4):
            mirror.checkpoint(_manifest(w, f"ckpt{w}".encode()), f"ckpt{w}".encode())
        assert await mirror.wait_idle(20)
        assert [(await getter.get("", f"/aggregate/{w}"))[0] for w in range(4)] == [404, 404, 200, 200]
        status, latest = await getter.get("", "/checkpoint/latest")
        assert status == 200 and CheckpointManifest.model_validate_json(latest).window == 4
        assert (await getter.get("", "/checkpoint/0"))[0] == 404  # pruned: newest 2 kept
        assert await getter.get("", "/checkpoint/2") == (200, b"ckpt2")
        # a restarted validator uploads what its state dir has and the bucket lacks
        local = CheckpointStore(tmp_path / "state")
        local.put_checkpoint(6, b"ckpt6", _manifest(6, b"ckpt6").model_dump())
        local.put_aggregate(6, b"agg6")
        local.put_aggregate(7, b"agg7")
        mirror.resync(local)
        assert await mirror.wait_idle(20)
        assert await getter.get("", "/aggregate/7") == (200, b"agg7")
        assert CheckpointManifest.model_validate_json((await getter.get("", "/checkpoint/latest"))[1]).window == 6
        assert await getter.get("", "/checkpoint/6") == (200, b"ckpt6")
        assert mirror.failures == 0
    finally:
        await mirror.close(timeout=5)
        await getter.close()


async def test_a_bucket_that_lost_its_objects_is_filled_again(s3, tmp_path):
    """A local S3 server restarted empty (or an emptied bucket): the next aggregate notices
    that latest.json is gone and the newest checkpoint and the aggregates since go up again."""
    loc = s3.location("refill")
    store = writer(s3, "refill")
    mirror = Mirror(store, read_location=loc)
    getter = StoreGetter(loc)
    local = CheckpointStore(tmp_path / "state")
    local.put_checkpoint(2, b"ckpt2", _manifest(2, b"ckpt2").model_dump())
    for w in (1, 2, 3):
        local.put_aggregate(w, f"agg{w}".encode())
    mirror.start()
    try:
        mirror.resync(local)
        assert await mirror.wait_idle(20) and mirror.published_checkpoint
        mirror.aggregate(3, b"agg3")
        assert await mirror.wait_idle(20) and mirror.refills == 0  # nothing lost: one HEAD, no refill
        await store.delete(await store.list_keys("refill/"))
        assert (await getter.get("", "/checkpoint/latest"))[0] == 404
        local.put_aggregate(4, b"agg4")
        mirror.aggregate(4, b"agg4")
        assert await mirror.wait_idle(20)
        assert mirror.refills == 1
        assert CheckpointManifest.model_validate_json((await getter.get("", "/checkpoint/latest"))[1]).window == 2
        assert await getter.get("", "/checkpoint/2") == (200, b"ckpt2")
        assert [(await getter.get("", f"/aggregate/{w}"))[0] for w in (1, 2, 3, 4)] == [404, 200, 200, 200]
    finally:
        await mirror.close(timeout=5)
        await getter.close()


async def test_mirror_retries_until_the_store_answers(s3, caplog):
    caplog.set_level(logging.WARNING, logger="swarmtrain.validator.mirror")
    loc = StoreLocation(endpoint=s3.endpoint, bucket="created-later", prefix="r")
    store = ObjectStore(loc, key_id=WRITE_KEY[0], secret=WRITE_KEY[1], timeout_s=5)
    mirror = Mirror(store, read_location=loc)
    mirror.start()
    try:
        mirror.aggregate(1, b"agg1")
        # no bucket yet: the upload fails and waits to retry
        await poll_until(lambda: asyncio.sleep(0, mirror.failures), lambda n: n >= 2, timeout=20, interval=0.05,
                         on_timeout=lambda n: AssertionError("the upload never failed"))
        await store.create_bucket()
        assert await mirror.wait_idle(15)
        assert await store.get("r/aggregates/00000001.bin") == b"agg1"
        lines = [r.getMessage() for r in caplog.records]
        waiting = [m for m in lines if m.startswith("waiting for the bucket")]
        assert len(waiting) == 1 and "upload of aggregate 1 failed" in waiting[0]  # one line, however many tries
        assert any(m.startswith("the bucket at ") and "is back" in m for m in lines)
    finally:
        await mirror.close(timeout=5)


def test_an_s3_subnet_needs_a_bucket_and_says_which_flags(tmp_path):
    assert make_mirror("validator", ValidatorSettings(netuid=1, state_dir=tmp_path)) is None
    with pytest.raises(ValueError, match="--s3-endpoint URL --s3-bucket NAME"):
        make_mirror("s3", ValidatorSettings(netuid=1, state_dir=tmp_path))
    mirror = make_mirror("s3", ValidatorSettings(netuid=1, state_dir=tmp_path, s3_endpoint="http://127.0.0.1:9",
                                                 s3_bucket="abc", s3_read_key_id="r", s3_read_secret="rs",
                                                 s3_write_key_id="w", s3_write_secret="ws"))
    assert mirror.read_location.key_id == "r" and mirror.store._key_id == "w"
    assert "hush-hush" not in repr(ValidatorSettings(netuid=1, state_dir=tmp_path, s3_write_secret="hush-hush"))


def test_read_keys_are_the_published_ones(s3):
    loc = s3.location("x")
    assert (loc.key_id, loc.secret) == READ_KEY
    assert s3.location("x", read_keys=False).key_id is None
