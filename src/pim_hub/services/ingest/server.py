"""How the webhook receiver is served: uvicorn, with a deadline for each request's headers.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`), the number of connections
(`limit_concurrency`) and the size of a request's head (`h11_max_incomplete_event_size`), but
not the time a client may take to send its headers: a client that opens a connection and
sends nothing, or dribbles a header byte every few seconds (slowloris), holds the connection
for as long as it likes, and a few hundred of them use up the connection cap. The protocol
below closes a connection whose request headers are not complete within
HUB_INGEST_HEADER_TIMEOUT_S of its first byte being awaited: from the connection's start, and
again from the end of each response on a kept-alive connection. Once the headers are in,
the body has its own deadline in the app (HUB_INGEST_BODY_TIMEOUT_S, answered 408).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pim_hub.services.ingest.settings import IngestSettings

logger = logging.getLogger(__name__)

#: The ASGI scope's key for when the request's head was read (`time.perf_counter()`).
READ_AT = "pimhub.read_at"

_TIMEOUT_BODY = b'{"error": "request headers not received in time"}'
#: What a client that sent part of a request hears before the connection closes.
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _TIMEOUT_BODY
)


class _HeaderDeadline:
    """Mixin for uvicorn's HTTP protocols: a timer from when headers are awaited until they
    are complete (uvicorn starts a request cycle then); on expiry the connection closes.

    It reads what both uvicorn protocols keep: `cycle` (the current request, replaced when a
    request's headers are parsed), `transport` and `loop`.
    """

    header_timeout_s: ClassVar[float] = 10.0
    cycle: Any
    transport: Any
    loop: Any
    _header_timer: asyncio.TimerHandle | None = None
    _received: bool = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        read_at = time.perf_counter()
        before = self.cycle
        self._received = True
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not before:
            # A request's headers are in: the app's body timeout takes over.
            self._disarm()
            # uvicorn runs the app in a task of its own: the handler measures how long that
            # task waited for the loop after the head was read (`READ_AT`).
            if self.cycle is not None:
                self.cycle.scope[READ_AT] = read_at
        elif self.cycle is None or self.cycle.response_complete:
            # Part of a (next) request's head: its headers have until the deadline.
            self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        # Idle now: uvicorn's keep-alive timer runs until the next byte, which re-arms ours.
        self._disarm()
        self._received = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served (its headers came in meanwhile)
        if self.transport.is_closing():
            return
        logger.debug("request headers not received in time; connection closed")
        if self._received:
            # Part of a request came: say why, as RFC 9110 allows (408, then close).
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()


class HttpToolsHeaderDeadline(_HeaderDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol (its default when httptools is installed) with the
    header deadline."""


class H11HeaderDeadline(_HeaderDeadline, H11Protocol):
    """uvicorn's pure-Python h11 protocol with the header deadline."""


def protocol(header_timeout_s: float, parser: str = "httptools") -> type[asyncio.Protocol]:
    """uvicorn's `http` protocol class closing connections whose headers are late."""
    base = HttpToolsHeaderDeadline if parser == "httptools" else H11HeaderDeadline
    return type(base.__name__, (base,), {"header_timeout_s": header_timeout_s})


def config(app: Any, host: str, port: int, ingest: IngestSettings) -> uvicorn.Config:
    """The uvicorn configuration of `hub ingest web` (and of the tests that serve it)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol(ingest.header_timeout_s),
        log_level="warning",
        access_log=False,
        log_config=None,
        # Bounded connections: beyond the cap uvicorn answers 503 at once; idle keep-alive
        # connections are closed; late headers close the connection (above), late bodies
        # get 408 from the app.
        limit_concurrency=ingest.max_connections,
        timeout_keep_alive=ingest.keep_alive_s,
    )
