"""The HTTP/1.1 protocol every Keyless listener serves (the HTTP port, each worker's, the TLS
frontend's HTTP/1.1): uvicorn's, with the request head bounded as Google's frontends bound it.

Google's front ends refuse a request whose line and headers pass ~16 KB (431, or 400). uvicorn's
httptools protocol has no such limit: llhttp hands each header to Python whole, so a 100 MB header
was buffered (+200 MB) and answered after 23 s (issue #23 item 4). `BoundedHttpToolsProtocol`
counts the bytes of the head as they arrive and answers 431 once they pass `MAX_HEAD_BYTES`
(httptools is a dependency; uvicorn's h11 protocol, if ever chosen, gets the same bound from
`h11_max_incomplete_event_size`).
"""

from __future__ import annotations

from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 16 * 1024
"""Request line plus headers, as Google's front ends and uvicorn's h11 default take them."""

HEAD_TOO_LARGE = "Request Header Fields Too Large"
LINGER_SECONDS = 1.0
"""How long a refused connection is read (and discarded) before it is closed."""


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop llhttp on an oversized head."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol refusing a request head over MAX_HEAD_BYTES with 431.

    Two counts: the bytes received while a head is incomplete (so an endless header is cut
    off after at most one read past the limit, whatever llhttp buffers), and the sum of the
    URL and headers llhttp reports (exact, for a head that arrived with its end in one read)."""

    def connection_made(self, transport: Any) -> None:
        self._head_pending, self._head_received, self._head_parsed, self._refused = True, 0, 0, False
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a 431: discarded
        if self._head_pending:
            self._head_received += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_head()
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._head_pending and self._head_received > MAX_HEAD_BYTES:
            self._refuse_head()

    def _refuse_head(self) -> None:
        self._head_pending, self._refused = False, True
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; "
                             b"charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (len(HEAD_TOO_LARGE), HEAD_TOO_LARGE.encode()))
        # A lingering close (nginx's lingering_close): closed at once with the client's bytes still
        # unread, the kernel resets the connection, and the client may lose the answer unread.
        # What arrives meanwhile is discarded.
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _count(self, size: int) -> None:
        self._head_parsed += size
        if self._head_parsed > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_message_begin(self) -> None:
        self._head_pending, self._head_parsed = True, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_pending, self._head_received = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_pending, self._head_received = True, 0


def uvicorn_options() -> dict[str, Any]:
    """The uvicorn.Config / uvicorn.run options of every HTTP/1.1 listener of Keyless."""
    return {"http": BoundedHttpToolsProtocol, "h11_max_incomplete_event_size": MAX_HEAD_BYTES}
