"""The miner node: train on the assigned shard, compress, submit, apply aggregates."""
