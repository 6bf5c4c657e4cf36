"""Connections that cannot lock others out: uvicorn's h11 protocol with a header deadline and per-client limits.

uvicorn (0.55) has a keep-alive timeout, but none for a request's headers, and its `limit_concurrency`
counts open connections: 256 connections that never send a request (about 4 KB of traffic) made every
other client, /healthz included, get 503. Here

- a connection must deliver each request's headers within `header_timeout` seconds of opening (or of
  the end of the previous response), however slowly it trickles them, or it is closed;
- one client address holds at most `per_client` connections, and the server `total`: past either,
  the oldest connection that is only waiting for request headers is closed to make room (a new
  client is served, an idle one is dropped); a client whose connections are all busy gets 503.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


_BUSY_BODY = b'{"detail":"too many connections from this client; try again later"}'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


def guarded_protocol(header_timeout: float = 10.0, per_client: int = 32, total: int = 256) -> type[H11Protocol]:
    """An H11Protocol class (uvicorn.Config(http=...)) with its own registry of open connections."""

    class GuardedH11Protocol(H11Protocol):
        clients: dict[str, dict[GuardedH11Protocol, None]] = {}  # address -> its connections, oldest first
        everyone: dict[GuardedH11Protocol, None] = {}
        header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self.address = self.client[0] if self.client else ""
            self.clients.setdefault(self.address, {})[self] = None
            self.everyone[self] = None
            self._arm_header_timer()
            if not self._make_room(self.clients[self.address], per_client) or not self._make_room(
                self.everyone, total
            ):
                self.transport.write(BUSY)
                self._close()

        def connection_lost(self, exc):
            self._forget()
            super().connection_lost(exc)

        def handle_websocket_upgrade(self, event):
            self._forget()  # the websocket protocol takes the connection over
            super().handle_websocket_upgrade(event)

        def on_response_complete(self):
            super().on_response_complete()
            self._arm_header_timer()  # the next request's headers, on a kept-alive connection

        def waiting(self) -> bool:
            """Only waiting for (the rest of) a request's headers: no request in progress."""
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def _make_room(self, connections: dict, limit: int) -> bool:
            """Close the oldest waiting connections (not this one) until at most `limit`; False if it cannot."""
            while len(connections) > limit:
                victim = next((c for c in connections if c is not self and c.waiting()), None)
                if victim is None:
                    return False
                victim._close()
            return True

        def _arm_header_timer(self):
            if self.header_timer is not None:
                self.header_timer.cancel()
            self.header_timer = self.loop.call_later(header_timeout, self._header_deadline)

        def _header_deadline(self):
            self.header_timer = None
            if self.waiting():
                self._close()

        def _close(self):
            self._forget()
            if not self.transport.is_closing():
                try:
                    self.conn.send(h11.ConnectionClosed())
                except h11.LocalProtocolError:
                    pass
                self.transport.close()

        def _forget(self):
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None
            self.everyone.pop(self, None)
            mine = self.clients.get(getattr(self, "address", None))
            if mine is not None:
                mine.pop(self, None)
                if not mine:
                    self.clients.pop(self.address, None)
            self.connections.discard(self)

    return GuardedH11Protocol
