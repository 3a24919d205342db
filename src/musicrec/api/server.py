"""uvicorn glue: an HTTP protocol that always disables Nagle's algorithm.

With ``--workers N`` uvicorn binds the listening socket itself without a protocol number, and
asyncio then skips ``TCP_NODELAY`` on accepted connections. A response's headers and body
leave in two writes, so the body waits for the client's delayed ACK: about 40 ms per
keep-alive request. Setting the option per connection restores sub-millisecond answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol

HTTP_PROTOCOL = "musicrec.api.server:NoDelayHTTPProtocol"


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's default HTTP/1.1 protocol with ``TCP_NODELAY`` on every connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
