"""The subnet config fields that pin a prepared dataset and its tokenizer.

Example:
    >>> dataset_fields("data/corpus")["vocab_size"]
    8192
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.shard_sources import is_url, open_source, read_all
from protocol.shards import MANIFEST_FILE, MAX_MANIFEST_BYTES, manifest_hash, parse_manifest
from protocol.tokenizer import BYTES, check_local_tokenizer, model_vocab_size


def dataset_fields(location: str, tokenizer: str | None = None) -> dict[str, Any]:
    """``dataset_name``, ``dataset_hash``, ``tokenizer``, ``tokenizer_hash`` and ``vocab_size``
    for the dataset at ``location`` (a local folder is written as an absolute path).

    ``tokenizer`` overrides where nodes are told the tokenizer file is (default: the copy
    next to the manifest); a local file there must have the manifest's tokenizer hash.
    """
    if not is_url(location):
        location = str(Path(location).resolve())
    source = open_source(location)
    data = read_all(source, MANIFEST_FILE, MAX_MANIFEST_BYTES)
    manifest = parse_manifest(data, source.describe(MANIFEST_FILE))
    entry = manifest.tokenizer
    fields: dict[str, Any] = {"dataset_name": location, "dataset_hash": manifest_hash(data),
                              "vocab_size": model_vocab_size(entry.info())}
    if entry.kind == BYTES:
        return {**fields, "tokenizer": BYTES, "tokenizer_hash": ""}
    where = tokenizer or source.describe(entry.file)
    if not is_url(where):
        where = str(Path(where).resolve())
        check_local_tokenizer(Path(where), entry.sha256)
    return {**fields, "tokenizer": where, "tokenizer_hash": entry.sha256}
