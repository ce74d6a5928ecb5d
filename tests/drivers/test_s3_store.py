"""The S3 store on a real S3 API (OpenStack Swift's s3api): what is particular to S3.

The behavioural suite every store passes (round trip, listing, large
objects, threads...) is in test_swift_store.py, parametrized over both
remote stores; the end-to-end backup and restore too.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]

from pieceworks.drivers.s3_store import S3Store
from pieceworks.drivers.swift_store import SwiftStore
from pieceworks.protocols import ConfigError
from tests.fixtures.swift_server import SwiftServer
from tests.support import remote_stores
from tests.support.remote_stores import SECRET, MiB, s3_store, unique


def raw_client(server: SwiftServer) -> Any:
    """A plain boto3 client for looking behind the store's back."""
    return boto3.client(
        "s3",
        endpoint_url=server.s3_endpoint,
        aws_access_key_id=server.s3_access_key,
        aws_secret_access_key=server.s3_secret_key,
        region_name=server.region,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )


def test_unknown_and_malformed_options_are_config_errors(swift_server: SwiftServer) -> None:
    """A misspelt option is named; malformed values are refused before any request."""
    options = swift_server.s3_options(unique())
    with pytest.raises(ConfigError, match="part_sise"):
        S3Store(**options, part_sise="8MiB")
    for bad in (
        {"part_size": "4MiB"},  # S3 parts are at least 5 MiB
        {"multipart_threshold": "big"},
        {"retries": "many"},
        {"part_concurrency": "0"},
        {"addressing_style": "sideways"},
        {"bucket": "Not_A_Bucket"},
        {"bucket": "ab"},
    ):
        with pytest.raises(ConfigError):
            S3Store(**{**options, **bad})


def test_options_from_a_config_file_are_strings(swift_server: SwiftServer) -> None:
    """Every option may arrive as a string; the bucket is created on first use."""
    bucket = unique()
    store = S3Store(
        **swift_server.s3_options(
            bucket,
            multipart_threshold="16MiB",
            part_size="8MiB",
            part_concurrency="2",
            retries="1",
            backoff="0.1",
            max_backoff="1",
            timeout="30",
            verify="true",
            addressing_style="path",
        )
    )
    store.put("x", b"1")
    listed = raw_client(swift_server).list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["x"]
    assert "secret_key='***'" in repr(store)


def test_bad_credentials_are_a_config_error_without_the_secret(
    swift_server: SwiftServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong secret or an unknown access key: ConfigError, and the secret is nowhere."""
    caplog.set_level(logging.DEBUG)
    for access_key in ("test:tester", "test:nobody"):
        options = {**swift_server.s3_options(unique()), "access_key": access_key}
        with pytest.raises(ConfigError, match="check access_key") as err:
            S3Store(**{**options, "secret_key": SECRET})
        assert SECRET not in str(err.value)
        assert SECRET not in "".join(traceback.format_exception(err.value))
    assert SECRET not in caplog.text


def test_refused_connections_are_retried_with_backoff_then_transient(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens: 3 retries, backoff >= 0.2+0.4+0.8 s, then TransientError."""
    error = remote_stores.check_refused_connections_give_up(
        caplog,
        "pieceworks.drivers.s3_store",
        lambda port, **retry: S3Store(
            f"http://127.0.0.1:{port}", "test:tester", SECRET, "bucket", **retry
        ),
    )
    assert "EndpointConnectionError" in str(error)


def test_a_restarted_proxy_is_ridden_out_by_retries(
    swift_server: SwiftServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy goes down for a second; a put meanwhile retries and succeeds."""
    remote_stores.check_restarted_proxy_is_ridden_out(
        caplog, "pieceworks.drivers.s3_store", swift_server, s3_store
    )


def test_multipart_upload_leaves_no_upload_behind(swift_server: SwiftServer) -> None:
    """12 MiB in 5 MiB parts: one object, no multipart upload left open."""
    store = s3_store(swift_server)
    data = os.urandom(12 * MiB)
    store.put("big", data)
    client = raw_client(swift_server)
    assert client.list_multipart_uploads(Bucket=store._bucket).get("Uploads", []) == []
    assert client.head_object(Bucket=store._bucket, Key="big")["ContentLength"] == len(data)
    assert store.get("big") == data


def test_a_failed_multipart_upload_is_aborted(
    swift_server: SwiftServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part that fails (injected after one real part) aborts the upload on the server."""
    store = s3_store(swift_server, retries="0")
    real = store._client.upload_part
    calls: list[int] = []

    def fail_second_part(**kwargs: Any) -> Any:
        calls.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] == 2:
            raise RuntimeError("injected failure")
        return real(**kwargs)

    monkeypatch.setattr(store._client, "upload_part", fail_second_part)
    with pytest.raises(RuntimeError, match="injected"):
        store.put("big", os.urandom(12 * MiB))
    assert 2 in calls and set(calls) <= {1, 2, 3}  # parts go up 4 at a time
    client = raw_client(swift_server)
    assert client.list_multipart_uploads(Bucket=store._bucket).get("Uploads", []) == []
    assert not store.exists("big")


def test_objects_are_shared_with_the_swift_api(swift_server: SwiftServer) -> None:
    """A bucket is a Swift container: what S3 wrote (multipart too), Swift reads."""
    store = s3_store(swift_server)
    data = os.urandom(11 * MiB)
    store.put("big", data)
    store.put("small", b"s")
    swift = SwiftStore(**swift_server.swift_options(store._bucket))
    assert list(swift.list("")) == ["big", "small"]
    assert swift.get("big") == data
    assert swift.head("small").size == 1
