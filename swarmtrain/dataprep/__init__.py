"""Preparing training data: corpus reading, BPE training, tokenization into shards (``swarmtrain data``)."""
