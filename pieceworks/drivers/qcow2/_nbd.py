"""Stream-out of the qcow2 driver: a private ``qemu-nbd`` and a minimal NBD client.

`NbdServer` exports one image or internal snapshot read-only on a Unix
socket; `NbdClient` speaks just enough of the NBD protocol to read it
(fixed-newstyle handshake, ``NBD_OPT_GO``, simple replies, 1 MiB requests up
to 16 in flight); `NbdReader` is the `VolumeReader` over the two. See the
package docstring for the design and its measurements.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from typing import IO, Final

from pieceworks.drivers.qcow2._qemu import INSTALL_HINT, Qemu, image_spec
from pieceworks.protocols import BackendError, ConfigError, TransientError
from pieceworks.protocols.os_errors import os_error_text

__all__ = ["NbdClient", "NbdReader", "NbdServer"]


class NbdServer:
    """A ``qemu-nbd`` child exporting one image or snapshot read-only on a Unix socket.

    The socket lives in a fresh private temporary directory (a Unix socket
    path must be short, so not under the volume directory). The server
    takes one client and exits when that client disconnects, so it does
    not outlive a crashed caller that had connected. `stop` (or garbage
    collection) terminates it if need be and removes the directory.
    """

    def __init__(self, qemu: Qemu, fd: int, snapshot: str | None, label: str) -> None:
        self.label, self.timeout = label, qemu.timeout
        self.directory = tempfile.mkdtemp(prefix="pieceworks-nbd-")
        self.socket_path = os.path.join(self.directory, "nbd.sock")
        args = [qemu.nbd, "--read-only", f"--socket={self.socket_path}"]
        if snapshot is not None:
            args.append(f"--load-snapshot=snapshot.name={snapshot}")
        args.append(image_spec(fd))
        log: IO[bytes] | None = None
        try:
            log = open(os.path.join(self.directory, "qemu-nbd.log"), "w+b")  # noqa: SIM115
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=(fd,),
            )
        except OSError as exc:
            _stop_server(None, log, self.directory)
            if isinstance(exc, FileNotFoundError) and log is not None:
                raise ConfigError(f"{qemu.nbd} not found: {INSTALL_HINT}") from None
            raise BackendError(
                f"cannot read {label}: cannot run qemu-nbd: {os_error_text(exc)}"
            ) from exc
        self._proc, self._log = proc, log
        self._stop = weakref.finalize(self, _stop_server, proc, log, self.directory)

    def wait_listening(self) -> None:
        """Return once the socket exists; `BackendError` if qemu-nbd gives up first."""
        self._wait(lambda: os.path.exists(self.socket_path))

    def connect(self) -> socket.socket:
        """Connect to the export (the one client it serves)."""
        connected: list[socket.socket] = []

        def attempt() -> bool:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.socket_path)
            except (FileNotFoundError, ConnectionRefusedError):  # not bound, or not listening
                sock.close()
                return False
            except BaseException:
                sock.close()
                raise
            connected.append(sock)
            return True

        self._wait(attempt)
        return connected[0]

    def _wait(self, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while not ready():
            if self._proc.poll() is not None:
                raise BackendError(f"cannot read {self.label}: qemu-nbd failed: {self.stderr()}")
            if time.monotonic() > deadline:
                raise TransientError(f"cannot read {self.label}: qemu-nbd did not start")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def stderr(self) -> str:
        """What qemu-nbd has written to its standard error so far."""
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0)
            return self._log.read(4096).decode(errors="replace").strip() or "(no message)"
        return "(no message)"

    def stop(self) -> None:
        """Terminate the server and remove its directory. Idempotent."""
        self._stop()


def _stop_server(
    proc: subprocess.Popen[bytes] | None, log: IO[bytes] | None, directory: str
) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()  # harmless: the export is read-only
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if log is not None:
        log.close()
    shutil.rmtree(directory, ignore_errors=True)


# NBD protocol constants (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).
_NBDMAGIC: Final = 0x4E42444D41474943  # "NBDMAGIC"
_IHAVEOPT: Final = 0x49484156454F5054  # "IHAVEOPT"
_REPLY_MAGIC: Final = 0x3E889045565A9
_REQUEST_MAGIC: Final = 0x25609513
_SIMPLE_REPLY_MAGIC: Final = 0x67446698
_FLAG_FIXED_NEWSTYLE: Final = 1
_FLAG_NO_ZEROES: Final = 2
_OPT_GO: Final = 7
_REP_ACK: Final = 1
_REP_INFO: Final = 3
_REP_ERROR_BIT: Final = 1 << 31
_INFO_EXPORT: Final = 0
_INFO_BLOCK_SIZE: Final = 3
_CMD_READ: Final = 0
_CMD_DISC: Final = 2

_REQUEST: Final = struct.Struct(">IHHQQI")  # magic, flags, type, cookie, offset, length
_REPLY: Final = struct.Struct(">IIQ")  # magic, error, cookie
_OPTION_REPLY: Final = struct.Struct(">QIII")  # magic, option, type, length

#: Bytes per NBD read request, and requests kept in flight (qemu-nbd serves 16 at once).
_PIECE: Final = 1 << 20
_WINDOW: Final = 16


class NbdClient:
    """The read side of the NBD protocol, just enough to stream one export.

    Fixed-newstyle handshake with ``NBD_OPT_GO``; simple replies only (no
    structured replies are negotiated), so a read's reply is a 16-byte
    header followed by exactly the data asked for. Replies may come in any
    order; each is matched to its request by cookie.
    """

    def __init__(self, sock: socket.socket, timeout: float, label: str) -> None:
        self._sock, self._label = sock, label
        self._header = bytearray(_REPLY.size)
        self._cookie = 0
        self._broken = ""
        try:
            sock.settimeout(timeout)
            self.size, self.max_request = self._handshake()
        except TimeoutError:
            sock.close()
            raise TransientError(f"cannot read {label}: NBD handshake timed out") from None
        except OSError as exc:
            sock.close()
            raise BackendError(
                f"cannot read {label}: NBD handshake failed: {os_error_text(exc)}"
            ) from exc
        except BaseException:
            sock.close()
            raise

    def _handshake(self) -> tuple[int, int]:
        magic, opt_magic, flags = struct.unpack(">QQH", self._recv_bytes(18))
        if magic != _NBDMAGIC or opt_magic != _IHAVEOPT or not flags & _FLAG_FIXED_NEWSTYLE:
            raise BackendError(f"cannot read {self._label}: not a fixed-newstyle NBD server")
        self._send(struct.pack(">I", _FLAG_FIXED_NEWSTYLE | (flags & _FLAG_NO_ZEROES)))
        # NBD_OPT_GO: default export (empty name), asking for its block size limits.
        payload = struct.pack(">IHH", 0, 1, _INFO_BLOCK_SIZE)
        self._send(struct.pack(">QII", _IHAVEOPT, _OPT_GO, len(payload)) + payload)
        size, max_request = -1, 32 << 20
        while True:
            magic, _option, kind, length = _OPTION_REPLY.unpack(self._recv_bytes(20))
            if magic != _REPLY_MAGIC or length > 65536:
                raise BackendError(f"cannot read {self._label}: malformed NBD option reply")
            body = self._recv_bytes(length)
            if kind & _REP_ERROR_BIT:
                message = body.decode(errors="replace") or f"error {kind & ~_REP_ERROR_BIT}"
                raise BackendError(f"cannot read {self._label}: NBD server refused: {message}")
            if kind == _REP_ACK:
                break
            if kind == _REP_INFO and len(body) >= 2:
                (info,) = struct.unpack_from(">H", body)
                if info == _INFO_EXPORT and len(body) >= 12:
                    (size,) = struct.unpack_from(">Q", body, 2)
                elif info == _INFO_BLOCK_SIZE and len(body) >= 14:
                    (max_request,) = struct.unpack_from(">I", body, 10)
        if size < 0:
            raise BackendError(f"cannot read {self._label}: NBD server sent no export size")
        return size, max(min(max_request, _PIECE), 4096)

    def read_into(self, offset: int, view: memoryview) -> None:
        """Fill all of `view` from export offset `offset` (the caller keeps it in bounds)."""
        if self._broken:
            raise BackendError(self._broken)
        pending: dict[int, tuple[int, memoryview]] = {}
        start, total, failed = 0, len(view), ""
        try:
            while start < total or pending:
                while start < total and len(pending) < _WINDOW:
                    length = min(self.max_request, total - start)
                    self._cookie += 1
                    pending[self._cookie] = (offset + start, view[start : start + length])
                    self._send(
                        _REQUEST.pack(
                            _REQUEST_MAGIC, 0, _CMD_READ, self._cookie, offset + start, length
                        )
                    )
                    start += length
                self._recv_into(memoryview(self._header))
                magic, error, cookie = _REPLY.unpack(self._header)
                if magic != _SIMPLE_REPLY_MAGIC or cookie not in pending:
                    raise BackendError(f"reading {self._label}: malformed NBD reply")
                at, piece = pending.pop(cookie)
                if error:
                    failed = failed or f"reading {self._label} failed at offset {at}: " + (
                        os.strerror(error) if error < 256 else f"NBD error {error}"
                    )
                    start = total  # send nothing more; collect what is in flight
                else:
                    self._recv_into(piece)
        except TimeoutError:
            self._broken = f"reading {self._label}: the NBD server stopped answering"
            raise TransientError(self._broken) from None
        except OSError as exc:
            self._broken = f"reading {self._label}: NBD connection failed: {os_error_text(exc)}"
            raise BackendError(self._broken) from exc
        except BackendError as exc:
            self._broken = str(exc)
            raise
        if failed:
            raise BackendError(failed)

    def close(self) -> None:
        """Say goodbye (``NBD_CMD_DISC``) if the connection is sound, and close it."""
        if not self._broken:
            with contextlib.suppress(OSError):
                self._send(_REQUEST.pack(_REQUEST_MAGIC, 0, _CMD_DISC, 0, 0, 0))
        self._broken = self._broken or f"{self._label}: reader is closed"
        self._sock.close()

    def _send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def _recv_into(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            n = self._sock.recv_into(view[done:])
            if n == 0:
                raise BackendError(f"reading {self._label}: NBD server closed the connection")
            done += n

    def _recv_bytes(self, length: int) -> bytes:
        buffer = bytearray(length)
        self._recv_into(memoryview(buffer))
        return bytes(buffer)


class NbdReader:
    """A `VolumeReader` over a private qemu-nbd export: random access, no temporary copy.

    Reads go straight into the caller's buffer. The server holds the image
    open from the start, so a volume replaced by a commit keeps reading as
    it was when opened.
    """

    __slots__ = ("_client", "_closed", "_server")

    def __init__(self, client: NbdClient, server: NbdServer) -> None:
        self._client, self._server, self._closed = client, server, False

    @property
    def size(self) -> int:
        return self._client.size

    def readinto_at(self, offset: int, buffer: memoryview) -> int:
        if self._closed:
            raise ValueError("reader is closed")
        if offset < 0:
            raise ValueError(f"negative offset {offset}")
        view = buffer if buffer.format == "B" and buffer.ndim == 1 else buffer.cast("B")
        length = max(0, min(len(view), self._client.size - offset))
        if length:
            self._client.read_into(offset, view[:length])
        return length

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()
        finally:
            self._server.stop()
