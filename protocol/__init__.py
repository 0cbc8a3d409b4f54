"""What every node must agree on: windows, data, model, update codec, criteria, emission, messages.

Pure and deterministic; imports none of the other swarmtrain packages and opens no sockets.
Being the bottom layer, it also holds the two runtime primitives every other layer shares:
``files`` (crash-safe writes) and ``retry`` (backoff, deadlines, polling).
"""
