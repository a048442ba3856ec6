"""A fake provider as a real HTTP server on loopback, for tests through the whole platform.

The platform builds channel instances from settings, so a test points the channel's URL
setting at :attr:`ProviderServer.url`; the fake is the same ``handler(httpx.Request) ->
httpx.Response`` the contract suite drives through ``httpx.MockTransport``::

    with ProviderServer(fake.handler) as server:
        monkeypatch.setenv("SUIFANG_CHANNEL_MYGATEWAY_URL", server.url + "/send")
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx

__all__ = ["ProviderServer"]

Handler = Callable[[httpx.Request], httpx.Response]


class ProviderServer:
    """Serves ``handler`` at ``http://127.0.0.1:<free port>`` while the ``with`` block runs."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        """The fake provider's ``httpx`` handler, called for every request."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL (no trailing slash)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ProviderServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        handler = self.handler
        base = self

        class Forward(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = httpx.Request(
                    self.command,
                    base.url + self.path,
                    headers=list(self.headers.items()),
                    content=self.rfile.read(length) if length else b"",
                )
                try:
                    response = handler(request)
                except Exception as exc:  # noqa: BLE001 -- a broken fake answers 500, visibly
                    response = httpx.Response(500, text=f"fake provider failed: {exc!r}")
                body = response.content
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test's own assertions say what happened."""

        return Forward
