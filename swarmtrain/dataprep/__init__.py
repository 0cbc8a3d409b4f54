"""Preparing training data: corpus reading, BPE training, tokenization into shards (``swarmtrain data``).

Light on purpose (the CLI reads these defaults while building its parser).
"""

DEFAULT_SHARD_TOKENS = 1 << 22  # 8 MiB shards with uint16 ids
