"""The shard file header, the manifest's rules, and where each sample lies."""

from __future__ import annotations

import doctest

import pytest

from protocol import shards
from protocol.shards import (
    HEADER_SIZE,
    Manifest,
    ManifestError,
    ShardEntry,
    ShardError,
    SplitLayout,
    TokenizerEntry,
    check_shard_size,
    decode_header,
    encode_header,
    manifest_bytes,
    manifest_hash,
    parse_manifest,
)


def _entry(name: str, tokens: int, width: int = 2) -> ShardEntry:
    return ShardEntry(file=name, sha256="0" * 64, tokens=tokens, bytes=HEADER_SIZE + tokens * width)


def _manifest(**overrides) -> Manifest:
    fields = dict(
        tokenizer=TokenizerEntry(kind="bytes", sha256="", vocab_size=264, eos_id=257), dtype="uint16",
        shard_tokens=100, max_token_id=257, train=[_entry("train-00000.tok", 100), _entry("train-00001.tok", 7)],
        val=[_entry("val-00000.tok", 50)], val_fraction=0.01, seed="s",
    )
    return Manifest(**{**fields, **overrides})


def test_header_is_32_bytes_little_endian() -> None:
    header = encode_header(0x0102030405, 4)
    assert header == b"SWTOKENS" + (1).to_bytes(4, "little") + (4).to_bytes(4, "little") \
        + (0x0102030405).to_bytes(8, "little") + bytes(8)
    assert decode_header(header, "a.tok") == (4, 0x0102030405)


@pytest.mark.parametrize("data, match", [
    (b"SWTOK", "truncated.*shorter than its 32-byte header"),
    (b"NOTSHARD" + bytes(24), "not a swarmtrain token shard"),
    (encode_header(5, 3), "not a swarmtrain token shard"),
])
def test_bad_headers_name_the_file(data: bytes, match: str) -> None:
    with pytest.raises(ShardError, match=match) as err:
        decode_header(data, "dir/train-00003.tok")
    assert "dir/train-00003.tok" in str(err.value)


def test_size_checks_tell_truncated_from_foreign_shards() -> None:
    entry = _entry("t.tok", 10)
    check_shard_size("t.tok", HEADER_SIZE + 20, 2, 10, entry)
    with pytest.raises(ShardError, match="truncated.*fetched again"):
        check_shard_size("t.tok", HEADER_SIZE + 19, 2, 10, entry)
    with pytest.raises(ShardError, match="different preparations"):
        check_shard_size("t.tok", HEADER_SIZE + 22, 2, 11, entry)


def test_manifest_round_trips_canonically() -> None:
    m = _manifest()
    data = manifest_bytes(m)
    assert data.endswith(b"}\n") and parse_manifest(data, "m.json") == m
    assert manifest_bytes(parse_manifest(data, "m.json")) == data
    assert manifest_hash(data) != manifest_hash(manifest_bytes(_manifest(seed="t")))


@pytest.mark.parametrize("overrides, match", [
    (dict(train=[_entry("a.tok", 7), _entry("b.tok", 100)]), "except the last"),
    (dict(val=[ShardEntry(file="v.tok", sha256="0" * 64, tokens=5, bytes=99)]), "bytes 99"),
    (dict(val=[_entry("train-00000.tok", 5)]), "unique"),
    (dict(max_token_id=264), "outside the tokenizer"),
    (dict(val=[]), "at least 1"),
])
def test_inconsistent_manifests_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _manifest(**overrides)


def test_parse_names_the_manifest_and_the_fix() -> None:
    with pytest.raises(ManifestError, match="manifest https://x/m.json is invalid at dtype.*swarmtrain data prepare"):
        parse_manifest(manifest_bytes(_manifest()).replace(b'"uint16"', b'"int8"'), "https://x/m.json")
    with pytest.raises(ManifestError, match="invalid"):
        parse_manifest(b"not json", "m.json")


def test_samples_stay_inside_their_shard() -> None:
    entries = [_entry("a", 100), _entry("b", 100), _entry("c", 30)]
    layout = SplitLayout.build(entries, seq_len=8, shard_tokens=100)
    assert int(layout.population) == 12 + 12 + 3 and layout.population.page == 12
    seen = []
    for i in range(int(layout.population)):
        shard, start = layout.locate(i)
        assert start + 8 + 1 <= entries[shard].tokens  # the sample and its target fit the shard
        seen.append((shard, start))
    assert len(set(seen)) == len(seen) and seen[12] == (1, 0) and seen[-1] == (2, 16)
    with pytest.raises(IndexError, match="out of range"):
        layout.locate(27)


def test_shards_too_small_for_a_sample_are_refused() -> None:
    with pytest.raises(ManifestError, match="--shard-tokens above 65"):
        SplitLayout.build([_entry("a", 64)], seq_len=64, shard_tokens=64)


def test_docstring_examples() -> None:
    assert doctest.testmod(shards).failed == 0
