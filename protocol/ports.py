"""A free TCP port on the loopback, for the processes a local network or a test starts.

Free a moment ago is all it promises: another process may take it before ours binds, so
callers that start several servers keep the ports they hand out apart (``swarmtrain local``
does) and a server that fails to bind says which port.

Example:
    >>> port = free_port()
    >>> 0 < port < 65536
    True
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free when this returned."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
