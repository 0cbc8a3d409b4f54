"""What every node must agree on: windows, data, model, update codec, criteria, emission, messages.

Pure and deterministic; imports none of the other swarmtrain packages and opens no sockets.
"""
