"""Swift requests and answers below `SwiftStore`: what the store's methods use.

* `WatchedConnection`, a swiftclient `Connection` whose HTTP pools tell a
  request's `_object_client.Deadline` which connection it uses;
* `delete_large` / `delete_plain`: DELETE a Static Large Object (with its
  segments, reading the bulk-delete report swiftclient drops) or one object;
* `md5`, `stored_md5`, `modified`: what an answer's headers say (the MD5 a
  body must have, the write time on the store's clock);
* the store's private errors: `Denied`, `PreconditionFailed`,
  `PageTooLarge` (a listing page over the cluster's limit, and the next size
  to try).

Split out of ``swift_store.py`` (a reshape: behaviour unchanged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote

from oslo_utils import strutils
from swiftclient.client import Connection  # type: ignore[import-untyped]
from swiftclient.exceptions import ClientException  # type: ignore[import-untyped]

from pieceworks.drivers import _object_client
from pieceworks.protocols import BackendError

__all__ = [
    "MD5_META",
    "Denied",
    "PageTooLarge",
    "PreconditionFailed",
    "WatchedConnection",
    "delete_large",
    "delete_plain",
    "md5",
    "modified",
    "stored_md5",
]

#: Where a large object keeps the MD5 of its whole body (its ETag is the segments' MD5).
MD5_META: Final = "X-Object-Meta-Pieceworks-Md5"
#: Swift's answer (412) to a listing page larger than its limit: "Maximum limit is 100".
_MAXIMUM_LIMIT: Final = re.compile(rb"Maximum limit is (\d+)")

log = logging.getLogger("pieceworks.drivers.swift_store")


def delete_large(conn: Any, container: str, name: str) -> None:
    """DELETE a Static Large Object: its segments, then its manifest.

    ``multipart-manifest=delete`` answers 200 with a bulk-delete report
    in the body (it reports a missing object as "not found", not as an
    error); swiftclient drops that body, so the request is made on the
    connection directly.
    """
    parsed, http = conn.http_conn or conn.http_connection()
    conn.http_conn = (parsed, http)
    path = f"{parsed.path.rstrip('/')}/{quote(container)}/{quote(name)}"
    resp = http.request(
        "DELETE",
        f"{path}?multipart-manifest=delete",
        "",
        {"X-Auth-Token": conn.token, "Accept": "application/json"},
    )
    status, body = int(resp.status_code), bytes(resp.content)
    if status == 404:
        return
    if not 200 <= status < 300:
        raise ClientException(
            f"Object DELETE failed: {status} {resp.reason}",
            http_status=status,
            http_reason=str(resp.reason),
            http_response_content=body[:200],
        )
    try:
        report = json.loads(body) if body.strip() else {}
    except ValueError:
        report = {}
    response_status = str(report.get("Response Status", "200"))
    errors = report.get("Errors") or []
    code = int(response_status[:3]) if response_status[:3].isdigit() else 500
    if any("Not an SLO manifest" in str(e) for e in errors):  # replaced by a small one meanwhile
        delete_plain(conn, container, name)
        return
    if errors or not 200 <= code < 300:
        raise ClientException(
            f"Object DELETE failed: {response_status}; errors: {errors}",
            http_status=code if code >= 300 else 500,
            http_reason=response_status,
        )


def delete_plain(conn: Any, container: str, name: str) -> None:
    """DELETE one object; a missing one is fine."""
    try:
        conn.delete_object(container, name)
    except ClientException as exc:
        if exc.http_status != 404:
            raise


class WatchedConnection(Connection):  # type: ignore[misc]
    """A swiftclient `Connection` whose pools tell a request's `Deadline` its connection."""

    def http_connection(self, url: str | None = None) -> Any:
        parsed, http = super().http_connection(url)
        session = getattr(http, "request_session", None)
        for adapter in getattr(session, "adapters", {}).values():
            _object_client.watch_pools(getattr(adapter, "poolmanager", None))
        return parsed, http


class Denied(BackendError):
    """Swift refused access (401 after a new token, 403); a `ConfigError` when opening."""


class PreconditionFailed(BackendError):
    """Swift answered 412 to ``If-None-Match: *``: the object exists."""


class PageTooLarge(BackendError):
    """Swift refused (412) a listing page of `limit` names: above its ``container_listing_limit``.

    `answer` is the body of the refusal (``Maximum limit is 100``).
    """

    def __init__(self, limit: int, answer: object) -> None:
        super().__init__(f"a listing page of {limit} names is over the cluster's limit")
        self.limit = limit
        self.answer = answer if isinstance(answer, bytes) else str(answer or "").encode()

    def smaller(self, label: str) -> int:
        """The page size to try next: the limit Swift names, else a tenth of this one.

        Raise `BackendError` if there is none smaller (a page of 1 refused:
        the 412 is not about the page size).
        """
        found = _MAXIMUM_LIMIT.search(self.answer)
        named = int(found.group(1)) if found else 0
        smaller = named if 1 <= named < self.limit else self.limit // 10
        if smaller < 1:
            raise BackendError(
                f"{label}: Swift refuses container listings (412 Precondition Failed)"
                f" even a page of {self.limit} name(s): {self.answer[:200]!r}"
            )
        log.warning(
            "%s: Swift refused a listing page of %d names (412: %r); listing %d at a time",
            label,
            self.limit,
            self.answer[:80],
            smaller,
        )
        return smaller


def md5(data: bytes) -> str:
    """The hex MD5 of `data` (what Swift's ``ETag`` of a plain object is)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def stored_md5(headers: dict[str, str]) -> str | None:
    """The MD5 a GET's body must have: the ``ETag`` of a plain object, our metadata for a large one.

    A large object's ``ETag`` is the MD5 of its segments' ETags, so `put`
    records the whole body's MD5 in `MD5_META`; a large object written
    without it, or a Dynamic Large Object (written by other tools), is not
    checked (None).
    """
    if strutils.bool_from_string(headers.get("x-static-large-object")):
        return headers.get(MD5_META.lower())
    if "x-object-manifest" in headers:  # a Dynamic Large Object: its ETag is no body MD5
        return None
    etag = headers.get("etag", "").strip('"')
    return etag if len(etag) == 32 else None


def modified(headers: dict[str, str]) -> float | None:
    """The object's write time on the store's clock (POSIX seconds); None if not given.

    ``X-Timestamp`` (to the microsecond) where Swift sends it, else
    ``Last-Modified`` (to the second).
    """
    try:
        stamp = headers.get("x-timestamp")
        if stamp:
            return float(stamp)
        date = headers.get("last-modified")
        return parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        return None
