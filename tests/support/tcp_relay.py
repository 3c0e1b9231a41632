"""A TCP relay between a client and a server on loopback that can hold what the client sends.

The API server speaks only TLS, so an HTTP proxy (tests/support/faulty_proxy.py) cannot sit in
front of it without terminating TLS; this relay passes the bytes through unread. While held,
bytes from clients wait in the relay and the server's answers still flow, so a request sent
meanwhile reaches the server only at `release()`: a watch that resumes while held resumes
from the resourceVersion it had, however much the server moved on in between.

    with TcpRelay(upstream_port) as relay:
        client = ...(f"https://127.0.0.1:{relay.port}")
        relay.hold()
        ...                      # the world changes; relay.held_chunks counts what waits
        relay.release()
"""
from __future__ import annotations

import socket
import threading


class TcpRelay:
    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self._upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.held_chunks = 0  # chunks from clients that arrived while held

    def __enter__(self) -> TcpRelay:
        threading.Thread(target=self._accept, name="tcp-relay", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed.set()
        self._open.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if from_client and not self._open.is_set():
                    with self._lock:
                        self.held_chunks += 1
                    self._open.wait()
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
