"""Runtime helpers shared by miner and validator: HTTP/TLS plumbing, checkpoint store, logging."""
