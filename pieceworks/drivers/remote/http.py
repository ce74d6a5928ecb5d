"""The remote target over HTTP: routes, the request handler, heartbeat streaming.

`TargetServer` serves one `TargetService`; `_Handler` matches a request to
a route of `_ROUTES`, checks the token, reads the body and calls the
service. A long operation runs on its own thread: answered plainly if done
within the service's `answer_within`, else streamed as progress lines every
`heartbeat` seconds, then its outcome (see `pieceworks.drivers.remote.protocol`).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, cast
from urllib.parse import parse_qs, urlsplit

from pieceworks.drivers.remote.protocol import (
    API_VERSION,
    MAX_JSON_BODY,
    PIECE,
    HTTPProblem,
    secret_values,
    wire_error,
)
from pieceworks.drivers.remote.service import (
    TargetService,
)
from pieceworks.drivers.remote.transfer import (
    Job,
    RequestBody,
    receive_volume,
)
from pieceworks.protocols import (
    PieceworksError,
    VolumeRef,
)

log = logging.getLogger(__name__)
_DRAIN_LIMIT = 256 << 20
_ID = r"([A-Za-z0-9][A-Za-z0-9._-]{0,127})"


def _query_int(path: str, name: str) -> int:
    values = parse_qs(urlsplit(path).query).get(name, [])
    if len(values) != 1 or not re.fullmatch(r"[0-9]{1,19}", values[0]):
        raise ValueError(f"{name}: expected ?{name}=N, a non-negative integer")
    return int(values[0])


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    action: str
    auth: bool = True
    body: str = "json"  # "json", "raw", "frames" (a replication's stream) or "none"
    long: bool = False
    job: bool = False  # counts against max_jobs
    status: HTTPStatus = HTTPStatus.OK


def _route(method: str, path: str, action: str, **kw: Any) -> _Route:
    return _Route(method, re.compile(path.replace("{id}", _ID) + "$"), action, **kw)


_ROUTES: Final = (
    _route("GET", "/v1/health", "health", auth=False, body="none"),
    _route("GET", "/v1/info", "info", body="none"),
    _route("GET", "/v1/volumes", "list_volumes", body="none"),
    _route("POST", "/v1/volumes", "create_volume", status=HTTPStatus.CREATED),
    _route("PUT", "/v1/volumes/{id}", "write_volume", body="raw"),
    _route("GET", "/v1/volumes/{id}/sha256", "volume_sha256", body="none", long=True),
    _route("GET", "/v1/volumes/{id}/snapshots", "list_snapshots", body="none"),
    _route(
        "POST",
        "/v1/volumes/{id}/snapshots",
        "create_snapshot",
        long=True,
        status=HTTPStatus.CREATED,
    ),
    _route("DELETE", "/v1/volumes/{id}/snapshots/{id}", "delete_snapshot", body="none"),
    _route("POST", "/v1/push", "push", long=True, job=True),
    _route("POST", "/v1/pull", "pull", long=True, job=True),
    _route("POST", "/v1/replicate", "replicate", long=True, job=True),
    _route("PUT", "/v1/volumes/{id}/receive", "receive_volume", body="frames", job=True),
    _route("POST", "/v1/sweep", "sweep"),
)


class TargetServer(ThreadingHTTPServer):
    """The HTTP server of one `TargetService` (a thread per connection)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: TargetService) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.service = service

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket."""
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _busy() -> HTTPProblem:
    return HTTPProblem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "TransientError",
        "the target is busy with other pushes, pulls and replications; try again",
    )


class _Handler(BaseHTTPRequestHandler):
    """One connection, one request (``Connection: close``)."""

    protocol_version = "HTTP/1.1"
    server_version = "pieceworks-remote-target/1"
    sys_version = ""
    timeout = 60  # seconds a client may stay silent while sending a request

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged once, when answered (see `_dispatch`)."""

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    # -- dispatch --

    @property
    def service(self) -> TargetService:
        return cast(TargetServer, self.server).service

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        self.close_connection = True
        self._secrets: list[str] = [self.service.token] if self.service.token else []
        self._body_left = 0
        self._body: RequestBody | None = None
        path = self.path.split("?", 1)[0]
        status: int = HTTPStatus.INTERNAL_SERVER_ERROR
        try:
            try:
                self._body_left = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise HTTPProblem(
                    HTTPStatus.BAD_REQUEST, "BadRequest", "Content-Length is not a number"
                ) from None
            status = self._handle(method, path)
        except Exception as exc:  # every failure is answered, never a dropped connection
            status = self._fail(exc)
        log.info("%s %s -> %d (%.3f s)", method, path, status, time.monotonic() - started)

    def _handle(self, method: str, path: str) -> int:
        route, params = self._match(method, path)
        if route.auth and not self.service.authorized(self.headers.get("Authorization")):
            raise HTTPProblem(
                HTTPStatus.UNAUTHORIZED,
                "Unauthorized",
                "missing or wrong bearer token for this target",
            )
        body = self._read_json() if route.body == "json" else {}
        if isinstance(body.get("store"), dict):
            options = body["store"].get("options")
            if isinstance(options, dict):
                self._secrets += secret_values({str(k): str(v) for k, v in options.items()})
        if isinstance(body.get("keys"), dict):
            self._secrets += [str(v) for v in body["keys"].values()]
        if isinstance(body.get("peer"), dict):
            token = body["peer"].get("token")
            if isinstance(token, str) and token:
                self._secrets.append(token)
        action = route.action
        svc = self.service
        if action == "health":
            return self._send_json(HTTPStatus.OK, {"ok": True})
        if action == "write_volume":
            if "Content-Length" not in self.headers:
                raise HTTPProblem(
                    HTTPStatus.LENGTH_REQUIRED, "BadRequest", "Content-Length is required"
                )
            length, self._body_left = self._body_left, 0
            result = svc.write_volume(params[0], self.rfile.read, length)
            return self._send_json(route.status, result)
        if action == "receive_volume":
            return self._receive(route, params[0])
        if not route.long:
            call: Callable[..., dict[str, Any]] = getattr(svc, action)
            args: list[Any] = list(params)
            if route.body == "json":
                args.append(body)
            return self._send_json(route.status, call(*args))
        return self._run_long(route, params, body)

    def _match(self, method: str, path: str) -> tuple[_Route, tuple[str, ...]]:
        allowed = False
        for route in _ROUTES:
            m = route.pattern.match(path)
            if m is None:
                continue
            if route.method == method:
                return route, m.groups()
            allowed = True
        if allowed:
            raise HTTPProblem(
                HTTPStatus.METHOD_NOT_ALLOWED, "BadRequest", f"{method} is not allowed on {path}"
            )
        raise HTTPProblem(
            HTTPStatus.NOT_FOUND,
            "NoSuchEndpoint",
            f"no endpoint {path} in API version {API_VERSION}",
        )

    def _read_json(self) -> dict[str, Any]:
        length, self._body_left = self._body_left, 0
        if length > MAX_JSON_BODY:
            raise HTTPProblem(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "BadRequest", "request body too large"
            )
        raw = self.rfile.read(length) if length else b"{}"
        if len(raw) != length and length:
            raise HTTPProblem(HTTPStatus.BAD_REQUEST, "BadRequest", "request body cut short")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise HTTPProblem(
                HTTPStatus.BAD_REQUEST, "BadRequest", f"request body is not JSON: {exc}"
            ) from None
        if not isinstance(value, dict):
            raise HTTPProblem(HTTPStatus.BAD_REQUEST, "BadRequest", "expected a JSON object")
        return value

    # -- long operations --

    def _run_long(self, route: _Route, params: tuple[str, ...], body: dict[str, Any]) -> int:
        svc = self.service
        if route.job and not svc.jobs.acquire(blocking=False):
            raise _busy()
        job = Job()
        call: Callable[..., dict[str, Any]] = getattr(svc, route.action)
        args: list[Any] = [*params, body] if route.body == "json" else list(params)
        future = self._start(lambda: call(*args, job), route.action, release=route.job)
        return self._deliver(route.status, future, job)

    def _start(
        self, work: Callable[[], dict[str, Any]], name: str, *, release: bool
    ) -> Future[dict[str, Any]]:
        """Run `work` on its own thread; release a job slot after it if `release`."""
        svc = self.service
        future: Future[dict[str, Any]] = Future()

        def run() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(work())
                    except BaseException as exc:
                        future.set_exception(exc)
            finally:
                if release:
                    svc.jobs.release()

        threading.Thread(target=run, name=f"pieceworks-{name}", daemon=True).start()
        return future

    def _deliver(self, status: HTTPStatus, future: Future[dict[str, Any]], job: Job) -> int:
        """Answer with `future`'s outcome: plainly if quick, else as a progress stream."""
        if wait([future], timeout=self.service.answer_within).done:
            exc = future.exception()
            if exc is not None:
                raise exc
            return self._send_json(status, future.result())
        return self._stream(future, job)

    def _receive(self, route: _Route, volume_id: str) -> int:
        """``PUT /v1/volumes/<id>/receive``: read a replication's frames, then commit.

        The body is read here, on the connection's thread; the commit (an
        fsync of the whole copy) runs as a long operation with heartbeats.
        """
        svc = self.service
        size = _query_int(self.path, "size")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._body = RequestBody(self.rfile, None)
        elif "Content-Length" in self.headers:
            self._body = RequestBody(self.rfile, self._body_left)
            self._body_left = 0
        else:
            raise HTTPProblem(
                HTTPStatus.LENGTH_REQUIRED, "BadRequest", "Content-Length or chunked body required"
            )
        if not svc.jobs.acquire(blocking=False):
            raise _busy()
        job = Job()
        started = time.monotonic()
        svc.begin_write(volume_id)
        try:
            svc.sweep_leftovers()
            received = receive_volume(svc.driver, VolumeRef(volume_id), size, self._body, job=job)
        except BaseException:
            svc.end_write(volume_id)
            svc.jobs.release()
            raise
        self._body = None

        def commit() -> dict[str, Any]:
            try:
                received.writer.commit()
            finally:
                svc.end_write(volume_id)
            log.info(
                "received volume %r: %d frames, %d of %d bytes written, %.2f s",
                volume_id,
                received.frames,
                received.bytes_written,
                size,
                time.monotonic() - started,
            )
            return {
                "volume_id": volume_id,
                "size": size,
                "frames": received.frames,
                "bytes_written": received.bytes_written,
            }

        return self._deliver(route.status, self._start(commit, "commit", release=True), job)

    def _stream(self, future: Future[dict[str, Any]], job: Job) -> int:
        """Answer with progress lines (one at once) until `future` is done, then its outcome."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

        def progress() -> dict[str, Any]:
            seconds = round(time.monotonic() - job.started, 3)
            return {"progress": {"done": job.done, "total": job.total, "seconds": seconds}}

        try:
            # A streamed answer opens with a progress line at once, then one
            # per heartbeat, so the manager knows the operation is under way.
            self._write_chunk(progress())
            while not wait([future], timeout=self.service.heartbeat).done:
                self._write_chunk(progress())
        except OSError as exc:
            job.cancelled.set()
            log.warning("the manager went away (%s): cancelling the operation", exc)
            wait([future])
            return 499
        failure = future.exception()
        if failure is None:
            line: dict[str, Any] = {"result": future.result()}
            status: int = HTTPStatus.OK
        else:
            status, error = wire_error(failure, self._secrets)
            self._log_failure(failure, error)
            line = {"error": error}
        try:
            self._write_chunk(line)
            self.wfile.write(b"0\r\n\r\n")
        except OSError as err:
            log.warning("could not deliver the outcome: the manager went away (%s)", err)
        return status

    def _write_chunk(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        self.wfile.flush()

    # -- answers --

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> int:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        return int(status)

    def _fail(self, exc: Exception) -> int:
        status, error = wire_error(exc, self._secrets)
        self._log_failure(exc, error)
        self._drain()
        try:
            return self._send_json(status, {"error": error})
        except OSError:
            return int(status)

    def _log_failure(self, exc: BaseException, error: Mapping[str, Any]) -> None:
        log.warning(
            "%s %s failed: %s: %s", self.command, self.path, error["type"], error["message"]
        )
        if error["type"] == "BackendError" and not isinstance(exc, PieceworksError):
            # Frames only: the exception's own text may hold a secret (redacted above).
            log.warning("internal error at:\n%s", "".join(traceback.format_tb(exc.__traceback__)))

    def _drain(self) -> None:
        """Read the unread request body, so the client can read the error answer."""
        body, self._body = self._body, None
        if body is not None:
            body.drain(_DRAIN_LIMIT)
            return
        left, self._body_left = self._body_left, 0
        if left > _DRAIN_LIMIT:
            return
        try:
            while left > 0:
                piece = self.rfile.read(min(PIECE, left))
                if not piece:
                    return
                left -= len(piece)
        except OSError:
            return


# -- running it --------------------------------------------------------------------
