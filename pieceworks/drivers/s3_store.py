"""An object store in one S3 bucket (boto3), for AWS S3 or any S3-compatible service.

`S3Store` keeps every object under its key in one bucket, created if missing
(with ``create=False``, a missing bucket is `StoreMissing` and nothing is
created):

* `put` is one PutObject (atomic in S3). An object larger than
  `multipart_threshold` is sent as a multipart upload in `part_size` parts
  (S3 parts are at least 5 MiB, except the last); the upload becomes visible
  only when it is completed, and a failed one is aborted;
* `get`/`head` raise `ObjectNotFound` on 404 / ``NoSuchKey`` (but
  `BackendError` if the bucket itself is gone: ``NoSuchBucket``, or a HEAD
  of the bucket after a bare 404, at most every 10 s); `delete` of a
  missing object is no error;
* `list` pages through ListObjectsV2 (sorted by the service), 1,000 keys a
  page, fewer where Swift's s3api cannot list that many (below);
* `sizes` (the ``stored-sizes`` extension) lists a key prefix that many of
  the keys share (ListObjectsV2 carries each object's size) and HEADs the
  rest, `part_concurrency` at a time;
* integrity on the wire: every PutObject and UploadPart carries
  ``Content-MD5`` (the service answers ``BadDigest`` to damaged bytes), and
  every object records its whole body's MD5 in the metadata
  ``x-amz-meta-pieceworks-md5``, which a GET's body is checked against (the
  ETag is no MD5 for multipart or SSE-KMS objects). A mismatch either way is
  retried; objects written without that metadata are not checked.

Addressing is path-style (``http://host/bucket/key``) with signature v4 by
default, which works with Swift's s3api, MinIO, Ceph RGW and AWS alike.
Failures worth retrying (connection errors, timeouts, HTTP 5xx, 408, 429,
``SlowDown``, ``BadDigest``...) are retried with exponential backoff (tenacity; botocore's
own retries are turned off) and end in `TransientError`. A socket timeout
bounds each read only: one try of a request also has a total deadline
(`request_deadline`), after which its connection is shut down
(`_object_client.Deadline`) and the try fails like a timeout, naming the
store, the request and the deadline. A PutObject cut off is not stored; a
multipart upload that fails is aborted. Bad credentials
are a `ConfigError`. The secret key is never shown: not in `repr`, messages
or logs.

Thread safety: one boto3 client is made in the constructor and shared by
all threads, including those that upload the parts of one large object at
once; boto3 clients are thread-safe (sessions are not, and none is kept).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, TypeVar

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from oslo_utils import strutils

from pieceworks.drivers import _object_client
from pieceworks.protocols import (
    BackendError,
    ConfigError,
    ObjectInfo,
    ObjectNotFound,
    PieceworksError,
    StoredSizes,
    StoreMissing,
    TransientError,
    validate_key,
)

__all__ = ["DEFAULT_MULTIPART_THRESHOLD", "DEFAULT_PART_SIZE", "MIN_PART_SIZE", "S3Store"]

DEFAULT_MULTIPART_THRESHOLD: Final = 64 << 20
DEFAULT_PART_SIZE: Final = 8 << 20
MIN_PART_SIZE: Final = 5 << 20  # S3's minimum for every part but the last
MAX_PARTS: Final = 10_000
_TRANSIENT_STATUS: Final = frozenset({408, 425, 429})
_TRANSIENT_CODES: Final = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        # The body did not match its Content-MD5 / signed SHA-256: damaged on the way.
        "BadDigest",
        "XAmzContentSHA256Mismatch",
    }
)
#: The user metadata (``x-amz-meta-``) that holds the MD5 of an object's whole body.
_MD5_META: Final = "pieceworks-md5"
_CREDENTIAL_CODES: Final = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "InvalidClientTokenId"}
)
_MISSING_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})
_NO_BUCKET_CODES: Final = frozenset({"404", "NoSuchBucket", "NotFound"})
#: Keys per ListObjectsV2 page: S3's maximum.
_MAX_KEYS: Final = 1000
#: Swift's s3api asks Swift for MaxKeys + 1 names; above the cluster's
#: ``container_listing_limit`` Swift refuses (412) and s3api answers this InternalError.
_S3API_PAGE_REFUSED: Final = "unexpected status code 412"
#: Seconds between checks, on a 404 for an object, that the bucket itself still exists.
_GONE_CHECK: Final = 10.0
_OPTIONS: Final = _object_client.StoreOptions("s3 store", size_example="8MiB")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

T = TypeVar("T")
log = logging.getLogger(__name__)


class S3Store(StoredSizes):
    """An object store in one S3 bucket.

    `_max_keys` (keys per listing page) starts at `_MAX_KEYS` and is halved
    for good while Swift's s3api refuses a page (see `_listing`).

    Options (keyword arguments; strings from a configuration file are
    accepted for every one):

    `endpoint_url`
        The service's URL (``http://127.0.0.1:8080``); empty for AWS.
    `access_key`, `secret_key`
        The credentials (for Swift's s3api: ``account:user`` and the key).
    `bucket`
        The bucket that holds the objects (3-63 lowercase letters, digits,
        ``.`` and ``-``); created if missing, unless `create` is false.
    `create`
        Whether a missing bucket is created when the store is opened
        (default true: what a backup wants). With false, a bucket that does
        not exist (HeadBucket answers 404 / ``NoSuchBucket``) raises
        `StoreMissing` naming it, and nothing is created; the commands that
        only read a store open it this way.
    `region`
        Default ``us-east-1``.
    `multipart_threshold`, `part_size`
        Objects larger than the threshold (default 64 MiB) are uploaded in
        parts of `part_size` bytes (default 8 MiB, at least 5 MiB);
        ``8MiB`` style suffixes are accepted.
    `part_concurrency`
        How many parts of one object are uploaded at once (default 4).
    `addressing_style`
        ``path`` (default), ``virtual`` or ``auto``.
    `retries`, `backoff`, `max_backoff`
        Retries after the first try (default 5), first wait and cap (seconds,
        default 0.5 and 10) of the exponential backoff between tries.
    `timeout`
        Connect and read timeout of each request in seconds (default 60):
        how long one connect or read may wait.
    `request_deadline`
        Seconds one try of one request may take in all, plus one second per
        MiB of the body sent: default
        300. A service that trickles its answer is cut off there.
    `verify`
        Verify TLS certificates (default true); or a CA bundle's path.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        access_key: str,
        secret_key: str,
        bucket: str,
        region: str = "us-east-1",
        multipart_threshold: int | str = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int | str = DEFAULT_PART_SIZE,
        part_concurrency: int | str = 4,
        addressing_style: str = "path",
        retries: int | str = 5,
        backoff: float | str = 0.5,
        max_backoff: float | str = 10.0,
        timeout: float | str = 60.0,
        verify: bool | str = True,
        request_deadline: float | str = _object_client.DEFAULT_REQUEST_DEADLINE,
        *,
        create: bool | str = True,
        **unknown: object,
    ) -> None:
        _OPTIONS.refuse_unknown(unknown)
        _OPTIONS.require_strings(
            {"access_key": access_key, "bucket": bucket, "region": region},
            secret=("secret_key", secret_key),
        )
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(
                f"s3 store: invalid bucket name {bucket!r}: use 3-63 lowercase letters,"
                " digits, '.' or '-', starting and ending with a letter or digit"
            )
        if addressing_style not in ("path", "virtual", "auto"):
            raise ConfigError(
                f"s3 store: addressing_style must be path, virtual or auto,"
                f" not {addressing_style!r}"
            )
        self._endpoint = endpoint_url or None
        self._access_key = access_key
        self._secret_key = secret_key
        self._bucket = bucket
        self._region = region
        self._threshold = _OPTIONS.size("multipart_threshold", multipart_threshold)
        self._part_size = _OPTIONS.size("part_size", part_size)
        if self._part_size < MIN_PART_SIZE:
            raise ConfigError(
                f"s3 store: part_size must be at least 5 MiB ({MIN_PART_SIZE} bytes),"
                f" not {part_size!r}"
            )
        self._concurrency = _OPTIONS.whole("part_concurrency", part_concurrency, 1)
        self._retry = _OPTIONS.retry_policy(retries, backoff, max_backoff, log)
        timeout_s = _OPTIONS.number("timeout", timeout, 0.001)
        self._deadline = _OPTIONS.number("request_deadline", request_deadline, 0.001)
        make = _OPTIONS.flag("create", create)
        verify_tls: bool | str = verify
        if isinstance(verify, str):
            try:
                verify_tls = strutils.bool_from_string(verify, strict=True)
            except ValueError:
                verify_tls = verify  # a CA bundle's path
        where = _object_client.mask_url(self._endpoint) if self._endpoint else f"AWS {region}"
        self._label = f"s3 store {bucket!r} at {where}"
        config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"total_max_attempts": 1, "mode": "standard"},  # tenacity retries
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            max_pool_connections=16,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            session = boto3.session.Session(
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=region,
            )
            self._client: Any = session.client(
                "s3", endpoint_url=self._endpoint, config=config, verify=verify_tls
            )
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError(f"{self._label}: {self._scrub(str(exc))}") from None
        session_http = getattr(getattr(self._client, "_endpoint", None), "http_session", None)
        if not _object_client.watch_pools(getattr(session_http, "_manager", None)):
            log.warning("%s: request_deadline cannot be enforced by this botocore", self._label)
        self._conditional_puts = True  # until the service says it has none (501)
        self._bucket_seen = 0.0  # when the bucket was last known to exist (monotonic)
        try:
            if make:
                self._ensure_bucket()
            else:
                self._require_bucket()
        except _Denied as exc:
            raise ConfigError(str(exc)) from None

    _max_keys: int = _MAX_KEYS  # keys per listing page (`_listing` may halve it)

    def __repr__(self) -> str:
        endpoint = _object_client.mask_url(self._endpoint) if self._endpoint else None
        return (
            f"S3Store(endpoint_url={endpoint!r}, access_key={self._access_key!r},"
            f" secret_key={_object_client.MASK!r}, bucket={self._bucket!r})"
        )

    # -- the object-store contract -------------------------------------------------

    def put(self, key: str, data: bytes | memoryview) -> None:
        validate_key(key)
        body = _object_client.body_bytes(data)
        if len(body) > self._threshold:
            self._put_multipart(key, body)
        else:
            self._put_object(key, body, {})

    def get(self, key: str) -> bytes:
        validate_key(key)

        def get() -> bytes:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            with response["Body"] as stream:
                body = bytes(stream.read())
            expected = int(response.get("ContentLength", len(body)))
            if len(body) != expected:
                raise TransientError(
                    f"{self._label}: get {key!r}: short read, {len(body)} of {expected} bytes"
                )
            want = (response.get("Metadata") or {}).get(_MD5_META)
            if want is not None and _md5(body).hexdigest() != want:  # damaged on the way
                raise TransientError(
                    f"{self._label}: get {key!r}: the body's MD5 is not the stored {want}"
                )
            return body

        return self._call(f"get {key!r}", get, missing=key)

    def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        response = self._call(
            f"head {key!r}",
            lambda: self._client.head_object(Bucket=self._bucket, Key=key),
            missing=key,
        )
        modified = response.get("LastModified")
        if modified is None:  # the store's clock cannot be read: never guess it
            raise BackendError(
                f"{self._label}: head {key!r}: the answer has no usable Last-Modified,"
                " so the store's clock cannot be read"
            )
        return ObjectInfo(key, int(response["ContentLength"]), modified.timestamp())

    def delete(self, key: str) -> None:
        validate_key(key)
        with contextlib.suppress(ObjectNotFound):
            self._call(
                f"delete {key!r}",
                lambda: self._client.delete_object(Bucket=self._bucket, Key=key),
                missing=key,
            )

    def list(self, prefix: str) -> Iterator[str]:
        """Yield the keys under `prefix`, a ListObjectsV2 page at a time.

        Pages are fetched by continuation token (not a boto3 paginator) so
        that each page is retried on its own.
        """
        for name, _ in self._listing(prefix):
            yield name

    def sizes(self, keys: Iterable[str]) -> dict[str, int]:
        """A ListObjectsV2 per shared key prefix, concurrent HEADs for the rest."""

        def head(key: str) -> int | None:
            try:
                return self.head(key).size
            except ObjectNotFound:
                return None

        return _object_client.batched_sizes(
            keys, head=head, listing=self._listing, concurrency=self._concurrency
        )

    def _listing(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every object under `prefix`, a page at a time.

        The next page is asked for by the page's continuation token or, from
        a service that says "truncated" without one, by ``StartAfter`` the
        last key. Every key must sort after the one before it: a page that
        repeats or goes back (a service that ignores ``StartAfter``) is a
        `BackendError`, never a listing that silently stops early (a gc that
        missed a page of manifests would delete chunks they reference).

        Swift's s3api lists a page by asking Swift for MaxKeys + 1 names; on
        a cluster whose ``container_listing_limit`` is at most that (and
        s3api's ``max_bucket_listing`` left at 1,000) Swift refuses and s3api
        answers ``InternalError`` "unexpected status code 412": the page is
        asked again with half as many keys, and so are the pages after it.
        """
        token: str | None = None
        last: str | None = None
        while True:
            limit = self._max_keys

            def page_after(
                token: str | None = token, last: str | None = last, limit: int = limit
            ) -> dict[str, Any]:
                extra: dict[str, str] = {}
                if token:
                    extra["ContinuationToken"] = token
                elif last is not None:
                    extra["StartAfter"] = last
                try:
                    page: dict[str, Any] = self._client.list_objects_v2(
                        Bucket=self._bucket, Prefix=prefix, MaxKeys=limit, **extra
                    )
                except ClientError as exc:
                    if _code(exc) == "InternalError" and _S3API_PAGE_REFUSED in str(exc):
                        raise _PageTooLarge(self._scrub(str(exc))) from None
                    raise
                return page

            try:
                page = self._call(f"list {prefix!r}", page_after)
            except _PageTooLarge as exc:
                if limit <= 1:
                    raise BackendError(
                        f"{self._label}: list {prefix!r}: the service refuses even a page of"
                        f" one key: {exc}"
                    ) from None
                self._max_keys = limit // 2
                log.warning(
                    "%s: the service cannot list %d keys a page (%s); listing %d at a time",
                    self._label,
                    limit,
                    exc,
                    self._max_keys,
                )
                continue
            for entry in page.get("Contents", ()):
                key = str(entry["Key"])
                if last is not None and key.encode() <= last.encode():
                    raise BackendError(
                        f"{self._label}: list {prefix!r}: the service listed {key!r}"
                        f" after {last!r}, out of order; the listing cannot be trusted"
                    )
                last = key
                yield key, int(entry["Size"])
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token and not page.get("Contents"):
                raise BackendError(
                    f"{self._label}: list {prefix!r}: the service says the listing goes on"
                    " but gives neither keys nor a continuation token"
                )

    def put_if_absent(self, key: str, data: bytes | memoryview) -> bool:
        """Write `key` unless it exists.

        Below the multipart threshold the PUT carries ``If-None-Match: *``, so
        the service itself refuses (412) to replace an object written
        meanwhile; a service that does not implement conditional writes
        (501) gets plain PUTs from then on.
        """
        if self.exists(key):
            return False
        body = _object_client.body_bytes(data)
        if len(body) > self._threshold or not self._conditional_puts:
            self.put(key, body)
            return True
        tries = _object_client.Tries()
        try:
            self._put_object(key, body, {"IfNoneMatch": "*"}, tries)
        except _PreconditionFailed:
            # A 412 to a retry may answer our own earlier try whose answer was lost.
            return tries.count > 1 and self._holds(key, body)
        except _NotImplemented:
            self._conditional_puts = False
            self._put_object(key, body, {})
        return True

    def _holds(self, key: str, body: bytes) -> bool:
        """Whether `key` is stored with exactly `body`."""
        try:
            return self.get(key) == body
        except ObjectNotFound:
            return False

    def _put_object(
        self,
        key: str,
        body: bytes,
        extra: dict[str, str],
        tries: _object_client.Tries | None = None,
    ) -> None:
        """PutObject `body`; the service checks it against ``Content-MD5``, a GET against
        the MD5 recorded in the metadata. `tries` counts the tries."""
        digest = _md5(body)
        self._call(
            f"put {key!r}",
            lambda: self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ContentMD5=base64.b64encode(digest.digest()).decode(),
                Metadata={_MD5_META: digest.hexdigest()},
                ContentType="application/octet-stream",
                **extra,
            ),
            tries=tries,
            size=len(body),
        )

    # -- multipart ---------------------------------------------------------------------

    def _put_multipart(self, key: str, body: bytes) -> None:
        """Upload `body` in parts (`part_concurrency` at a time); abort if any step fails."""
        part_size = max(self._part_size, -(-len(body) // MAX_PARTS))
        upload = self._call(
            f"start multipart upload of {key!r}",
            lambda: self._client.create_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                ContentType="application/octet-stream",
                Metadata={_MD5_META: _md5(body).hexdigest()},
            ),
        )
        upload_id = str(upload["UploadId"])
        view = memoryview(body)
        offsets = list(range(0, len(body), part_size))

        def upload_part(index: int) -> dict[str, object]:
            chunk = bytes(view[offsets[index] : offsets[index] + part_size])
            md5 = base64.b64encode(_md5(chunk).digest()).decode()
            response = self._call(
                f"put part {index + 1} of {key!r}",
                lambda: self._client.upload_part(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=index + 1,
                    Body=chunk,
                    ContentMD5=md5,
                ),
                size=len(chunk),
            )
            return {"PartNumber": index + 1, "ETag": str(response["ETag"])}

        try:
            parts = _object_client.run_all(upload_part, len(offsets), self._concurrency, "s3-part")
            self._call(
                f"complete multipart upload of {key!r}",
                lambda: self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BaseException:
            try:
                self._call(
                    f"abort multipart upload of {key!r}",
                    lambda: self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=key, UploadId=upload_id
                    ),
                )
            except BackendError as exc:
                log.warning("%s: cannot abort the upload of %r: %s", self._label, key, exc)
            raise

    # -- bucket, calls, errors and retries ---------------------------------------------

    def _ensure_bucket(self) -> None:
        def ensure() -> None:
            try:
                self._client.head_bucket(Bucket=self._bucket)
            except ClientError as exc:
                if _status(exc) != 404 and _code(exc) not in _NO_BUCKET_CODES:
                    raise
                extra: dict[str, object] = {}
                if self._region != "us-east-1":
                    extra["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
                try:
                    self._client.create_bucket(Bucket=self._bucket, **extra)
                except ClientError as again:
                    if _code(again) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        self._call(f"create bucket {self._bucket!r}", ensure)
        self._bucket_seen = time.monotonic()

    def _require_bucket(self) -> None:
        """`StoreMissing` if the store's bucket does not exist (one HeadBucket; nothing made)."""

        def exists() -> bool:
            try:
                self._client.head_bucket(Bucket=self._bucket)
            except ClientError as exc:
                if _status(exc) == 404 or _code(exc) in _NO_BUCKET_CODES:
                    return False
                raise
            return True

        if not self._call(f"head bucket {self._bucket!r}", exists):
            raise StoreMissing(
                f"{self._label} does not exist (no bucket {self._bucket!r}); nothing was"
                " created: check the bucket's name, or run a backup to create it",
                self._label,
            )
        self._bucket_seen = time.monotonic()

    def _call(
        self,
        what: str,
        fn: Callable[[], T],
        missing: str | None = None,
        tries: _object_client.Tries | None = None,
        size: int = 0,
    ) -> T:
        """Run `fn` with retries; map botocore errors to ours.

        `missing`: the key whose 404 means `ObjectNotFound` (else 404 is an error).
        `tries`: counts the tries made. `size`: the bytes the request moves
        (its deadline grows by a second per MiB).
        """
        seconds = _object_client.Deadline.for_body(self._deadline, size)

        def once() -> T:
            if tries is not None:
                tries.count += 1
            try:
                return fn()
            except ClientError as exc:
                error = self._error(what, exc, missing)
                if isinstance(error, ObjectNotFound):
                    self._bucket_still_there()
                raise error from None
            except SSLError as exc:
                raise BackendError(f"{self._label}: {what}: {self._scrub(str(exc))}") from None
            except (BotoConnectionError, HTTPClientError, IncompleteReadError, OSError) as exc:
                raise TransientError(
                    f"{self._label}: {what}: {type(exc).__name__}: {self._scrub(str(exc))}"
                ) from None

        return self._retry.call(
            lambda: _object_client.within_deadline(seconds, self._label, what, once)
        )

    def _bucket_still_there(self) -> None:
        """Raise `BackendError` if the bucket is gone (checked at most every `_GONE_CHECK` s).

        A HEAD of an object in a missing bucket answers a bare 404, like a
        missing object; without this check a bucket deleted under a running
        restore or check made every object look merely absent.
        """
        if time.monotonic() - self._bucket_seen < _GONE_CHECK:
            return
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except ClientError as exc:
            if _status(exc) == 404 or _code(exc) in _NO_BUCKET_CODES:
                raise self._gone() from None
            return  # no answer either way: the object's 404 stands
        except (BotoCoreError, OSError):
            return
        self._bucket_seen = time.monotonic()

    def _gone(self) -> BackendError:
        return BackendError(
            f"{self._label}: the bucket {self._bucket!r} does not exist (deleted while in use?)"
        )

    def _error(self, what: str, exc: ClientError, missing: str | None) -> PieceworksError:
        status, code = _status(exc), _code(exc)
        if code == "NoSuchBucket":
            return self._gone()
        if missing is not None and (status == 404 or code in _MISSING_CODES):
            return ObjectNotFound(f"no object {missing!r}")
        message = f"{self._label}: {what}: {self._scrub(str(exc))}"
        if status == 412 or code == "PreconditionFailed":
            return _PreconditionFailed(message)
        if status == 501 or code == "NotImplemented":
            return _NotImplemented(message)
        if status >= 500 or status in _TRANSIENT_STATUS or code in _TRANSIENT_CODES:
            return TransientError(message)
        if code in _CREDENTIAL_CODES:
            return ConfigError(f"{message} (check access_key and secret_key)")
        if status in (401, 403) or code == "AccessDenied":
            return _Denied(f"{message} (check access_key, secret_key and the bucket's owner)")
        return BackendError(message)

    def _scrub(self, text: str) -> str:
        """`text` with the secret key and anything that looks like a secret masked."""
        text = text.replace(" (reached max retries: 0)", "")  # botocore's; we retry ourselves
        return _object_client.scrub(text, (self._secret_key,))


class _PreconditionFailed(BackendError):
    """The service answered 412 to ``If-None-Match: *``: the object exists."""


class _PageTooLarge(BackendError):
    """Swift's s3api could not list a page of that many keys (Swift refused it: 412)."""


class _NotImplemented(BackendError):
    """The service does not implement what was asked (501), e.g. conditional writes."""


class _Denied(BackendError):
    """The service refused access (403); a `ConfigError` when the store is opened."""


def _md5(data: bytes) -> Any:
    """A finished MD5 of `data` (``.digest()`` for Content-MD5, ``.hexdigest()`` to compare)."""
    return hashlib.md5(data, usedforsecurity=False)


def _status(exc: ClientError) -> int:
    meta = exc.response.get("ResponseMetadata", {})
    return int(meta.get("HTTPStatusCode", 0))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
