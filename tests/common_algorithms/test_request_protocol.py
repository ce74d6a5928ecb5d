"""Requests as they travel between versions: tolerant, explicit decoding (`decode_request`).

A worker or conductor of an older version used to fail a request carrying a
field it did not know with ``TypeError: __init__() got an unexpected keyword
argument``. Now a field it does not know is ignored with a warning, unless
the sender lists it in ``protocol.requires``; a newer protocol version or a
lacking field is an `IncompatibleRequest` naming what is wrong.
"""

from __future__ import annotations

import logging

import pytest

from pieceworks.common_algorithms.jobs import backup_job_flow, backup_request, restore_request
from pieceworks.common_algorithms.operations.backup_tasks import BackupTransfer
from pieceworks.common_algorithms.operations.guard import DEFAULT_GUARD_MAX_CHUNKS
from pieceworks.common_algorithms.operations.replicate import replicate_request
from pieceworks.common_algorithms.operations.requests import (
    ADDED_FIELDS,
    PROTOCOL_FIELD,
    REQUEST_PROTOCOL,
    BackupRequest,
    ReplicateRequest,
    RestoreRequest,
    decode_request,
    request_fields,
)
from pieceworks.protocols import ConfigError, IncompatibleRequest

REQUESTS = (
    BackupRequest("vol-1", guard_percent=5, guard_max_chunks=7, labels={"a": "b"}),
    RestoreRequest("bk-1", "vol-2", overwrite=True),
    ReplicateRequest("vol-1", target_volume_id="vol-9", in_use=True, force=True),
)


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_the_fields_decode_to_the_same_request(request_: object) -> None:
    fields = request_fields(request_)  # type: ignore[arg-type]
    assert PROTOCOL_FIELD not in fields  # nothing is required: the shape of version 1
    assert decode_request(type(request_), fields) == request_  # type: ignore[type-var]


def test_fields_added_later_are_sent_only_when_they_change_something() -> None:
    """A receiver that predates guard_max_chunks still decodes a request at its default."""
    assert ADDED_FIELDS["BackupRequest"] == {"guard_percent", "guard_max_chunks"}
    plain = request_fields(BackupRequest("vol-1", backup_id="bk-1"))
    assert "guard_max_chunks" not in plain and "guard_percent" not in plain
    assert decode_request(BackupRequest, plain).guard_max_chunks == DEFAULT_GUARD_MAX_CHUNKS
    capped = request_fields(BackupRequest("vol-1", guard_max_chunks=3))
    assert capped["guard_max_chunks"] == 3


@pytest.mark.parametrize(
    ("decode", "fields"),
    [
        (backup_request, {"volume_id": "vol-1", "future_knob": 1}),
        (restore_request, {"backup_id": "bk-1", "volume_id": "v", "future_knob": 1}),
        (replicate_request, {"volume_id": "vol-1", "future_knob": 1}),
    ],
)
def test_an_unknown_field_is_ignored_with_a_warning(
    decode: object, fields: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        request = decode(fields)  # type: ignore[operator]
    assert not hasattr(request, "future_knob")
    [record] = [r for r in caplog.records if "future_knob" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "does not know them, and the sender does not require them" in record.getMessage()


def test_posting_is_strict_about_unknown_and_lacking_fields() -> None:
    with pytest.raises(ConfigError, match="unknown backup request field"):
        backup_request({"volume_id": "vol-1", "future_knob": 1}, strict=True)
    with pytest.raises(ConfigError, match="unknown replicate request field"):
        replicate_request({"volume_id": "vol-1", "future_knob": 1}, strict=True)
    with pytest.raises(ConfigError, match="the restore request lacks field"):
        restore_request({"backup_id": "bk-1"}, strict=True)


def test_a_required_field_this_version_does_not_know_is_refused_by_name() -> None:
    fields = {"volume_id": "vol-1", "future_knob": 1, "other": 2}
    fields[PROTOCOL_FIELD] = {"version": 1, "requires": ["future_knob", "volume_id"]}
    with pytest.raises(IncompatibleRequest) as raised:
        backup_request(fields)
    assert str(raised.value) == (
        "the backup request needs field(s) future_knob, which this version of pieceworks"
        f" (request protocol {REQUEST_PROTOCOL}) does not know: upgrade it"
    )
    assert raised.value.reference == "incompatible-request"
    fields[PROTOCOL_FIELD] = {"version": 1, "requires": ["volume_id"]}  # known: fine
    assert backup_request(fields).volume_id == "vol-1"


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        ({"version": REQUEST_PROTOCOL + 1}, "speaks request protocol 2; this version"),
        ({"version": 0}, "protocol must be"),
        ({"version": "1"}, "protocol must be"),
        ({"version": 1, "requires": "future_knob"}, "protocol must be"),
        ("1", "protocol must be"),
    ],
)
def test_a_newer_or_malformed_protocol_is_refused(protocol: object, message: str) -> None:
    with pytest.raises(IncompatibleRequest, match=message):
        decode_request(ReplicateRequest, {"volume_id": "vol-1", PROTOCOL_FIELD: protocol})


def test_a_lacking_field_is_incompatible_not_a_type_error() -> None:
    lacking = r"the restore request lacks field\(s\) volume_id"
    with pytest.raises(IncompatibleRequest, match=lacking):
        restore_request({"backup_id": "bk-1"})


def test_a_conductor_rebuilding_a_newer_job_refuses_it_before_opening_anything() -> None:
    """The job flow factory decodes first: the job fails naming the field, no TypeError."""
    request = {"volume_id": "vol-1", "backup_id": "bk-1", "future_knob": 1}
    request[PROTOCOL_FIELD] = {"version": 1, "requires": ["future_knob"]}
    with pytest.raises(IncompatibleRequest, match="future_knob"):
        backup_job_flow({"name": "x", "driver": "nope", "options": {}}, "s", request)


def test_a_step_lacking_arguments_is_incompatible_not_a_type_error() -> None:
    """An older conductor's step arguments: named, before anything is opened."""
    step = BackupTransfer(name="backup-bk-1.transfer-chunks")
    with pytest.raises(IncompatibleRequest) as raised:
        step.execute(backend="lab", store="lab", request={"volume_id": "vol-1"})
    assert str(raised.value) == (
        "step backup-bk-1.transfer-chunks lacks argument(s) attempt, source, which this"
        " version of pieceworks needs: the conductor is older"
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("TypeError: BackupRequest.__init__() got an unexpected keyword argument 'x'", True),
        ("TypeError: BackupTransfer.execute() got an unexpected keyword argument 'y'", True),
        ("TypeError: RestoreRequest.__init__() missing 1 required positional argument: 'v'", True),
        ("TypeError: ReplicaCopy.execute() missing 2 required positional arguments: 'a'", True),
        ("IncompatibleRequest: the backup request needs field(s) x", True),
        # the step's own failures stay RemoteStepFailed
        ("TypeError: unsupported operand type(s) for +: 'int' and 'str'", False),
        ("TypeError: f() got an unexpected keyword argument 'z'", False),
        ("BackendError: cannot log in", False),
    ],
)
def test_the_dispatcher_names_only_a_worker_that_cannot_take_the_request(
    text: str, named: bool
) -> None:
    from pieceworks.execution.dispatch import _incompatible  # noqa: PLC0415

    message = _incompatible(text, "lab", "backup-bk-1.transfer-chunks")
    assert (message is not None) == named, message
    if message is not None:
        assert message.startswith("the worker of backend 'lab' ") and text in message
