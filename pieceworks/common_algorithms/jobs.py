"""Flow factories for jobs: a backup or restore flow rebuilt from JSON-able arguments.

A job posted on a jobboard (`pieceworks.execution.jobs`) persists, in its
flow detail, the dotted path of one of these factories and its keyword
arguments; a conductor on any host re-imports the factory by that path and
calls it to rebuild the flow (``taskflow.engines.flow_from_detail``). The
path ``pieceworks.common_algorithms.jobs.backup_job_flow`` is therefore part
of every posted job: it stays here, in the layer that builds flows, while
posting, claiming and running jobs live one layer up, in
`pieceworks.execution`.

A job names its backend and store (``"lab"``); the conductor that runs it
passes `resolve`, which turns a name into ``{"name", "driver", "options"}``
(with ``origin`` and a store's ``password_file``) from that host's own
configuration, and opens it with the one loader
(`pieceworks.common_algorithms.opening`), so no option (and no secret) is
ever part of a job or of the persistence database. Jobs posted before names were
used carry the whole description instead; they are still accepted. An
encrypted store is opened with the passphrase in the file the description's
``password_file`` names (the host's configuration): a host without one fails
the job, saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from taskflow.flow import Flow

from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.opening import (
    Resolver,
    SectionRef,
    job_spec,
    open_backend,
    open_store,
)
from pieceworks.common_algorithms.operations.backup import backup_flow
from pieceworks.common_algorithms.operations.replicate import (
    CopyVolumeByName,
    replicate_flow,
    replicate_request,
)
from pieceworks.common_algorithms.operations.requests import (
    BackupRequest,
    RestoreRequest,
    VerifyRequest,
    decode_request,
)
from pieceworks.common_algorithms.operations.restore import restore_flow
from pieceworks.common_algorithms.operations.verify import verify_flow
from pieceworks.protocols import ConfigError

__all__ = [
    "BACKUP_FACTORY",
    "REPLICATE_FACTORY",
    "RESTORE_FACTORY",
    "VERIFY_FACTORY",
    "Resolver",
    "SectionRef",
    "backup_job_flow",
    "backup_request",
    "replicate_job_flow",
    "replicate_request",
    "restore_job_flow",
    "restore_request",
    "verify_job_flow",
    "verify_request",
]

#: The dotted paths persisted in posted jobs (``__name__`` is ``__main__`` under ``-m``).
_MODULE: Final = "pieceworks.common_algorithms.jobs"
BACKUP_FACTORY: Final = f"{_MODULE}.backup_job_flow"
RESTORE_FACTORY: Final = f"{_MODULE}.restore_job_flow"
REPLICATE_FACTORY: Final = f"{_MODULE}.replicate_job_flow"
VERIFY_FACTORY: Final = f"{_MODULE}.verify_job_flow"


def _backend(kind_ref: SectionRef, resolve: Resolver | None) -> Backend:
    return open_backend(job_spec("backend", kind_ref, resolve))


def _store(kind_ref: SectionRef, resolve: Resolver | None, *, create: bool = True) -> Store:
    """The job's store; with `create` false a missing one is `StoreMissing` (jobs that read)."""
    return open_store(job_spec("store", kind_ref, resolve), create=create)


def backup_request(request: Mapping[str, Any], *, strict: bool = False) -> BackupRequest:
    """`BackupRequest` from its fields as JSON gives them (``strategies`` a list).

    `decode_request`: a field this version does not know is ignored (logged),
    or with `strict` (posting) a `ConfigError`; `IncompatibleRequest` for a
    request this version cannot honour.
    """
    return decode_request(BackupRequest, request, strict=strict)


def restore_request(request: Mapping[str, Any], *, strict: bool = False) -> RestoreRequest:
    """`RestoreRequest` from its fields as JSON gives them (see `backup_request`)."""
    return decode_request(RestoreRequest, request, strict=strict)


def verify_request(request: Mapping[str, Any], *, strict: bool = False) -> VerifyRequest:
    """`VerifyRequest` from its fields as JSON gives them (see `backup_request`)."""
    return decode_request(VerifyRequest, request, strict=strict)


def backup_job_flow(
    backend: SectionRef,
    store: SectionRef,
    request: Mapping[str, Any],
    resolve: Resolver | None = None,
) -> Flow:
    """The backup flow of a job (a conductor's flow factory).

    `backend` and `store` are names, resolved by `resolve` into
    ``{"name", "driver", "options"}`` (or such descriptions themselves): the
    driver (namespace ``pieceworks.drivers``) or store
    (``pieceworks.stores``) is built by entry-point name with the options
    as keyword arguments. `request` holds `BackupRequest`'s fields; it must
    carry its ``backup_id`` so that every rebuild names its atoms alike.
    Raise `ConfigError` for a name `resolve` does not know (or without
    `resolve`), `IncompatibleRequest` for a request this version cannot
    honour (decoded first: see `decode_request`).
    """
    req = backup_request(request)
    return backup_flow(_backend(backend, resolve), _store(store, resolve), req)


def restore_job_flow(
    backend: SectionRef,
    store: SectionRef,
    request: Mapping[str, Any],
    resolve: Resolver | None = None,
) -> Flow:
    """The restore flow of a job (see `backup_job_flow`); a store that does not exist
    is `StoreMissing` (the job fails; nothing is created)."""
    req = restore_request(request)
    return restore_flow(_backend(backend, resolve), _store(store, resolve, create=False), req)


def verify_job_flow(
    store: SectionRef,
    request: Mapping[str, Any],
    resolve: Resolver | None = None,
) -> Flow:
    """The verify flow of a job: every chunk of ``request["backup_id"]`` checked.

    `store` is a name (see `backup_job_flow`); no backend is involved; a
    store that does not exist is `StoreMissing` (nothing is created).
    `request` holds `VerifyRequest`'s fields. The flow fails with
    `CorruptionError` (its last step, ``verify-<id>.verdict``) when a chunk
    is missing or damaged; its result, ``verify-<id>``'s, lists them all.
    """
    req = verify_request(request)
    return verify_flow(
        _store(store, resolve, create=False),
        req.backup_id,
        quarantine=req.quarantine,
        fail_on_problems=True,
    )


def replicate_job_flow(
    source: str,
    target: str,
    request: Mapping[str, Any],
    store: str | None = None,
    resolve: Resolver | None = None,
) -> Flow:
    """The replicate flow of a job: volume ``request["volume_id"]`` of backend `source`
    into backend `target` (`store` for the via-store strategy and the run journal).

    `source`, `target` and `store` are names only, resolved by `resolve` from
    the conductor host's configuration; the copy step is a `CopyVolumeByName`,
    which gets the names and the request's plain values through `execute()`
    and opens them (the same objects the plan was made with, here) where it
    runs. `request` holds `ReplicateRequest`'s fields with its
    ``operation_id``, so that every rebuild names its atoms alike. Raise
    `ConfigError` for a name `resolve` does not know (or without `resolve`),
    a bad request, and `NoEligibleStrategy` if no strategy can run.
    """
    req = replicate_request(request)
    backends: dict[str, Backend] = {}
    stores: dict[str, Store] = {}

    def open_backend(name: str) -> Backend:
        if name not in backends:
            backends[name] = _backend(_only_name("backend", name), resolve)
        return backends[name]

    def open_store(name: str) -> Store:
        if name not in stores:
            stores[name] = _store(_only_name("store", name), resolve)
        return stores[name]

    copy = CopyVolumeByName(
        req,
        source=source,
        target=target,
        store=store,
        open_backend=open_backend,
        open_store=open_store,
    )
    return replicate_flow(
        open_backend(source),
        open_backend(target),
        req,
        store=None if store is None else open_store(store),
        copy_step=copy,
    )


def _only_name(kind: str, ref: object) -> str:
    if not isinstance(ref, str):
        raise ConfigError(f"a replicate job names its {kind}s; it carries no description")
    return ref
