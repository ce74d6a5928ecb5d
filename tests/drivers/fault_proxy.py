"""A small TCP proxy the tests put between a store and the real Swift, to make bad days.

`FaultProxy(port)` listens on a free port of 127.0.0.1 and forwards every
connection to ``127.0.0.1:port``. Its `mode` says what happens to the next
requests (per connection, first request of each read direction only):

* ``"pass"``: forward unchanged;
* ``"stall"``: accept and read, never answer (a hung service);
* ``"refuse"``: close every new connection at once;
* ``"flip-request-body"``: flip the first byte of the next request body on the
  wire (headers are left alone), on any connection, then forward;
* ``"flip-response-body"``: the same for the next response body;
  ``"flip-response-body:/chunks/"`` only for answers to a request whose
  path holds ``/chunks/`` (likewise for requests);
* ``"drop-response"``: forward the request, then close the connection
  instead of passing the answer back (the service did the work, the
  client never hears so);
* ``"drop-response:PUT"`` (any method): the same for the next answer to a
  request of that method, on any connection;
* ``"strip:last-modified,x-timestamp"``: remove those headers from every
  answer (not counted);
* ``"status:503"`` (any code): answer every request with that status
  without forwarding it;
* ``"trickle:1.5"`` (seconds): forward requests, pass answers back one byte
  every 1.5 s (a service that is never silent long enough for a socket
  timeout, yet never done);
* ``"trickle-up:1.5"``: forward request bodies to the service one byte every
  1.5 s (an upload that never ends), answers unchanged.

`times` (default: forever) limits how many connections (for the flips:
bodies) are affected before
the proxy goes back to ``"pass"``; `affected` counts them. Used as a context
manager it stops its threads and sockets at exit.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Final

__all__ = ["FaultProxy"]

_HEADER_END: Final = b"\r\n\r\n"


class FaultProxy:
    """A TCP proxy to ``127.0.0.1:upstream`` whose faults the test switches on and off."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.times: int | None = None
        self.affected = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()

    def fault(self, mode: str, times: int | None = None) -> None:
        """Switch to `mode` for the next `times` connections (None: until switched back)."""
        with self._lock:
            self.mode, self.times, self.affected = mode, times, 0

    def _take_mode(self) -> str:
        with self._lock:
            mode = self.mode
            if mode != "pass":
                self.affected += 1
                if self.times is not None and self.affected >= self.times:
                    self.mode = "pass"
            return mode

    def cut(self) -> None:
        """Close every connection open now (clients must connect again)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closing.set()
        self._listener.close()
        for s in list(self._sockets):
            with contextlib.suppress(OSError):
                s.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the proxy ---------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            mode = self.mode
            if not mode.startswith(("flip-", "drop-response:", "strip:")):  # not per connection
                mode = self._take_mode()
            threading.Thread(
                target=self._handle, args=(client, mode), name="fault-proxy-conn", daemon=True
            ).start()

    def _handle(self, client: socket.socket, mode: str) -> None:
        if mode == "refuse":
            client.close()
            return
        if mode == "stall":
            try:
                while client.recv(65536):
                    pass
            except OSError:
                pass
            return
        if mode.startswith("status:"):
            self._answer(client, int(mode.split(":", 1)[1]))
            return
        try:
            server = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            client.close()
            return
        self._sockets.append(server)
        methods: deque[str] = deque()
        kind, _, pace = mode.partition(":")
        delay = float(pace) if kind in ("trickle", "trickle-up") else 0.0
        up = threading.Thread(
            target=self._pump,
            args=(client, server, _Framing(methods, True, self._flip), False),
            kwargs={"delay": delay if kind == "trickle-up" else 0.0},
            daemon=True,
        )
        up.start()
        down = _Framing(methods, False, self._flip, self._drop, self._strip)
        self._pump(
            server, client, down, mode == "drop-response", delay if kind == "trickle" else 0.0
        )

    def _strip(self) -> set[str]:
        """The (lowercase) names of response headers to remove, in mode ``strip:a,b``."""
        mode = self.mode
        if not mode.startswith("strip:"):
            return set()
        return {name.strip().lower() for name in mode.split(":", 1)[1].split(",")}

    def _drop(self, method: str) -> bool:
        """Whether the answer to a `method` request starting now is dropped."""
        wanted = f"drop-response:{method}"
        with self._lock:
            if self.mode != wanted:
                return False
        return self._take_mode() == wanted

    def _flip(self, requests: bool, target: str) -> bool:
        """Whether the body starting now (of a request or a response to one, whose path is
        `target`) gets a byte flipped."""
        wanted = "flip-request-body" if requests else "flip-response-body"
        with self._lock:
            mode = self.mode
            if mode != wanted and not (
                mode.startswith(wanted + ":") and mode.split(":", 1)[1] in target
            ):
                return False
        return self._take_mode() == mode

    def _answer(self, client: socket.socket, status: int) -> None:
        """Read one request's headers and answer `status` with no body, closing after."""
        data = b""
        try:
            while _HEADER_END not in data:
                more = client.recv(65536)
                if not more:
                    break
                data += more
            client.sendall(
                f"HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
        except OSError:
            pass
        finally:
            client.close()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        framing: _Framing,
        drop: bool,
        delay: float = 0.0,
    ) -> None:
        """Copy `src` to `dst` through `framing` (which may flip a byte), or drop the answer;
        with a `delay`, one byte every `delay` seconds."""
        try:
            while True:
                data = src.recv(65536)
                if not data or drop:
                    break
                data = framing.feed(data)
                if not delay:
                    dst.sendall(data)
                    continue
                for at in range(len(data)):
                    if self._closing.wait(delay) or _hung_up(src) or _hung_up(dst):
                        return
                    dst.sendall(data[at : at + 1])
        except (OSError, _Dropped):
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


def _hung_up(sock: socket.socket) -> bool:
    """Whether the peer of `sock` has closed its end (EOF waiting, or an error)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Framing:
    """Follows HTTP/1.1 messages of one direction; flips the first byte of the first body.

    Requests record their method in `methods` so that the answer to a HEAD
    is known to have no body. A chunked message ends the parsing (the rest
    passes unchanged).
    """

    def __init__(
        self,
        methods: deque[str],
        requests: bool,
        flip: Callable[[bool, str], bool],
        drop: Callable[[str], bool] | None = None,
        strip: Callable[[], set[str]] | None = None,
    ) -> None:
        self.methods = methods
        self.requests = requests
        self.want_flip = flip
        self.target = ""  # the path of the request being followed (or answered)
        self.want_drop = drop
        self.strip = strip
        self.head = b""
        self.body_left = 0
        self.fresh = False
        self.lost = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        while data:
            if self.lost:
                out += data
                return bytes(out)
            if self.body_left:
                if self.fresh and self.want_flip(self.requests, self.target):  # first byte
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.fresh = False
                take = min(self.body_left, len(data))
                out += data[:take]
                self.body_left -= take
                data = data[take:]
                continue
            self.head += data  # held back until complete, so that it can be rewritten
            at = self.head.find(_HEADER_END)
            if at < 0:
                return bytes(out)
            head, rest = self.head[:at], self.head[at + len(_HEADER_END) :]
            self._start(head)
            out += self._rewrite(head) + _HEADER_END
            self.head = b""
            self.fresh = self.body_left > 0
            data = rest
        return bytes(out)

    def _rewrite(self, head: bytes) -> bytes:
        """`head` without the header lines the proxy is told to strip (responses only)."""
        names = self.strip() if self.strip and not self.requests else set()
        if not names:
            return head
        lines = head.split(b"\r\n")
        kept = [lines[0]] + [
            line
            for line in lines[1:]
            if line.partition(b":")[0].strip().decode("latin-1").lower() not in names
        ]
        return b"\r\n".join(kept)

    def _start(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        fields = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        length = int(fields.get("content-length", "0") or 0)
        if self.requests:
            self.methods.append(lines[0])
            self.target = ([*lines[0].split(" "), "", ""])[1]
        else:
            status = lines[0].split(" ")[1] if " " in lines[0] else "200"
            if status.startswith("1"):  # 100 Continue: the final answer comes after
                self.body_left = 0
                return
            request = [*(self.methods.popleft() if self.methods else "GET /").split(" "), "", ""]
            method, self.target = request[0], request[1]
            if self.want_drop and self.want_drop(method):
                raise _Dropped
            if method == "HEAD" or status in ("204", "304"):
                length = 0
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self.lost = True  # not followed: the rest of the connection passes unchanged
            return
        self.body_left = length


class _Dropped(Exception):
    """The answer being forwarded is to be dropped: close the connection instead."""
