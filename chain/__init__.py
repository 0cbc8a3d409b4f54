"""The one way to the chain: a small facade over the bittensor SDK, plus the embedded devnet."""
