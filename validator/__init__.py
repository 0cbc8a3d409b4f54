"""The validator node: receive, verify, evaluate, score, aggregate, set weights."""
