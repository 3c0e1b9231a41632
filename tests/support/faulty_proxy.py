"""An HTTP proxy that sits between the daemon and a real server (Prometheus, or the kmock API
emulator) and misbehaves on demand: it can be down (connection refused), answer late, or
answer with an HTTP error. The servers behind it stay untouched, so a test heals the fault by
putting the proxy back to pass-through.

    with FaultyProxy(prometheus.url) as proxy:
        proxy.down()            # connection refused until proxy.up()
        proxy.delay_s = 2.0     # every answer 2 s late
        proxy.status = 503      # every request answered 503 without reaching the server
        proxy.rewrite = f       # answer f(path, body) instead: bytes, or chunks sent with no
                                #   Content-Length (streamed until closed); None: as it came
        proxy.trickle_s = 0.4   # the first trickle_bytes of each answer one byte every 0.4 s
        proxy.heal()            # pass-through again, same port
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# accept-encoding too: the answer is passed on without its Content-Encoding, so ask for it plain.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "accept-encoding"}


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay_s = 0.0
        self.status: int | None = None
        self.rewrite: Callable[[str, bytes], bytes | Iterable[bytes] | None] | None = None
        self.trickle_s = 0.0
        self.trickle_bytes = 16
        self.sent_bytes = 0  # body bytes written, over every answer
        self._server: ThreadingHTTPServer | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def __enter__(self) -> FaultyProxy:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if proxy.delay_s:
                    time.sleep(proxy.delay_s)
                if proxy.status is not None:
                    self._answer(proxy.status, b'{"status":"error","error":"injected by FaultyProxy"}', "application/json")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                request = urllib.request.Request(proxy.upstream + self.path, data=body, headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        body = answer.read()
                        rewritten = proxy.rewrite(self.path, body) if proxy.rewrite else None
                        self._answer(answer.status, body if rewritten is None else rewritten, answer.headers.get("Content-Type", ""))
                except urllib.error.HTTPError as err:
                    self._answer(err.code, err.read(), err.headers.get("Content-Type", ""))

            def _answer(self, status: int, body: bytes | Iterable[bytes], content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    if isinstance(body, bytes):
                        self.send_header("Content-Length", str(len(body)))
                    else:
                        self.send_header("Connection", "close")  # the body ends where the connection does
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.flush()
                    for chunk in [body] if isinstance(body, bytes) else body:
                        if proxy.trickle_s:
                            head, chunk = chunk[: proxy.trickle_bytes], chunk[proxy.trickle_bytes:]
                            for byte in head:
                                self.wfile.write(bytes([byte]))
                                self.wfile.flush()
                                proxy.sent_bytes += 1
                                time.sleep(proxy.trickle_s)
                        self.wfile.write(chunk)
                        proxy.sent_bytes += len(chunk)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: a timeout
                    pass

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def heal(self) -> None:
        self.delay_s, self.status, self.rewrite, self.trickle_s = 0.0, None, None, 0.0
        if self._server is None:
            self.up()
