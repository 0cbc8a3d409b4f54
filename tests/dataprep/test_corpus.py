"""Reading a corpus: chunking at line ends, binary files, JSONL, gzip, deterministic order."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.data import DataSourceError
from swarmtrain.dataprep.corpus import _read_lines, plan_chunks, read_chunk
from tests.dataprep.corpus_fixtures import write_corpus


@given(lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
       chunk=st.integers(1, 200), trailing=st.booleans())
@settings(max_examples=80, deadline=None)
def test_ranges_partition_the_lines(tmp_path_factory, lines: list[bytes], chunk: int, trailing: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if trailing else b"")
    path = tmp_path_factory.mktemp("r") / "f.txt"
    path.write_bytes(data)
    pieces = [_read_lines(str(path), s, min(chunk, len(data) - s)) for s in range(0, len(data), chunk)]
    assert b"".join(pieces) == data  # every line exactly once, in order
    assert all(not p or p.endswith(b"\n") or i == len(pieces) - 1 or not pieces[i + 1]
               for i, p in enumerate(pieces))


def test_plan_is_sorted_then_shuffled_by_the_seed(tmp_path) -> None:
    root = write_corpus(tmp_path / "c")
    a = plan_chunks([str(root)], 1 << 20, "s")
    assert a == plan_chunks([str(root)], 1 << 20, "s")
    assert a != plan_chunks([str(root)], 1 << 20, "t") and sorted(a, key=repr) == sorted(plan_chunks([str(root)], 1 << 20, "t"), key=repr)
    keys = {c.key for c in a}
    assert "0/part0/doc000.txt" in keys and "0/rows.jsonl" in keys
    assert not any(".hidden" in k for k in keys)


def test_documents_binary_jsonl_and_gzip(tmp_path) -> None:
    root = write_corpus(tmp_path / "c", files=2)
    with gzip.open(root / "page.1.gz", "wt") as f:
        f.write("a man page\n")
    with gzip.open(root / "more.jsonl.gz", "wt") as f:
        f.write(json.dumps({"body": "zipped row"}) + "\n")
    chunks = {c.key: c for c in plan_chunks([str(root)], 1 << 20, "s")}
    assert read_chunk(chunks["0/blob.bin"], "text") == []
    assert read_chunk(chunks["0/page.1.gz"], "text") == [("0/page.1.gz", "a man page\n")]
    assert read_chunk(chunks["0/more.jsonl.gz"], "body") == [("0/more.jsonl.gz:0", "zipped row")]
    rows = read_chunk(chunks["0/rows.jsonl"], "text")
    assert len(rows) == 10 and rows[0][0] == "0/rows.jsonl:0" and rows[1][0].startswith("0/rows.jsonl:")


def test_bad_jsonl_lines_name_the_file_the_offset_and_the_fix(tmp_path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "ok"}\nnot json\n{"other": 1}\n', encoding="utf-8")
    chunk = plan_chunks([str(path)], 1 << 20, "s")[0]
    with pytest.raises(DataSourceError, match=r"x.jsonl: the line at byte 15 is not JSON"):
        read_chunk(chunk, "text")
    path.write_text('{"text": "ok"}\n{"other": 1}\n', encoding="utf-8")
    with pytest.raises(DataSourceError, match="no string field 'text'.*--text-field"):
        read_chunk(plan_chunks([str(path)], 1 << 20, "s")[0], "text")


def test_missing_source_is_named(tmp_path) -> None:
    with pytest.raises(DataSourceError, match="nowhere.*neither a file, a folder nor 'hf:NAME'"):
        plan_chunks([str(tmp_path / "nowhere")], 1 << 20, "s")


def test_hugging_face_rows_are_batched_in_order(monkeypatch) -> None:
    import sys
    import types

    from swarmtrain.dataprep.corpus import hf_chunks

    calls = []

    def load_dataset(name, split, streaming):
        calls.append((name, split, streaming))
        return iter([{"text": f"row {i} " * 10} for i in range(25)])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    chunks = list(hf_chunks("hf:org/corpus:validation", "text", chunk_bytes=500))
    assert calls == [("org/corpus", "validation", True)]
    assert len(chunks) > 1 and sum(len(c.rows) for c in chunks) == 25
    docs = [d for c in chunks for d in read_chunk(c, "text")]
    assert [k for k, _ in docs] == [f"hf:org/corpus:validation:{i}" for i in range(25)]
    with pytest.raises(DataSourceError, match="no text field 'body'.*--text-field"):
        list(hf_chunks("hf:org/corpus", "body", chunk_bytes=500))
