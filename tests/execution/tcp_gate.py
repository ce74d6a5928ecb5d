"""A plain TCP relay to a local port that a test can shut (an outage) and open again.

`TcpGate(upstream)` listens on a free port of 127.0.0.1 and relays every
connection to ``127.0.0.1:upstream`` byte for byte. `shut()` closes every
open connection and closes new ones at once (the service looks down:
connections are reset); `open()` relays again. A context manager: stops its
threads and sockets at exit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["TcpGate"]


class TcpGate:
    """A relay to ``127.0.0.1:upstream`` on `port`, shut and opened by the test."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self._open = threading.Event()
        self._open.set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="tcp-gate", daemon=True)
        self._thread.start()

    def shut(self) -> None:
        """Close every relayed connection; close new ones at once until `open()`."""
        self._open.clear()
        self._drop_all()

    def open(self) -> None:
        """Relay new connections again."""
        self._open.set()

    def close(self) -> None:
        """Stop listening and close every connection."""
        self._closing.set()
        self._listener.close()
        self._drop_all()
        self._thread.join(timeout=5)

    def __enter__(self) -> TcpGate:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst), name="tcp-gate-pump", daemon=True
                ).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
