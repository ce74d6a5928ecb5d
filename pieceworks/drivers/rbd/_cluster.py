"""Reaching a Ceph cluster through librados, and turning its errors into ours.

`Options` checks an rbd backend's configuration without touching the
network; `Cluster` holds one librados connection (opened on first use,
shared by every call of the driver: librados handles are thread-safe) and
opens pools. `errors` maps the bindings' exceptions onto
`pieceworks.protocols.errors` so that no caller ever sees a ``rbd.Error``.

The bindings are Debian's ``python3-rados``/``python3-rbd`` (``make
ceph-bindings`` links them into the virtualenv, see docs/drivers.md); a
missing binding is a `ConfigError` naming how to get it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Final

from pieceworks.protocols import (
    BackendError,
    ConfigError,
    NotFound,
    TransientError,
)

if TYPE_CHECKING:
    import rados

__all__ = ["Cluster", "Options", "bindings", "errors", "short_hash"]

#: How long a librados call (connect, monitor or OSD operation) may take, seconds.
DEFAULT_TIMEOUT: Final = 30.0
_KNOWN = ("pool", "conf", "client", "keyring", "timeout")


def bindings() -> tuple[ModuleType, ModuleType]:
    """The ``rados`` and ``rbd`` modules; `ConfigError` saying how to install them."""
    try:
        import rados  # noqa: PLC0415  (optional: only this driver needs them)
        import rbd  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(
            f"rbd driver: the librados/librbd Python bindings are not importable ({exc}):"
            " install python3-rados and python3-rbd (scripts/install-system-deps.sh) and"
            " run `make ceph-bindings` to link them into the virtualenv (docs/drivers.md)"
        ) from None
    return rados, rbd


@dataclass(frozen=True)
class Options:
    """An rbd backend's configuration: pool, ceph.conf, client name, keyring, timeout.

    `conf` ``None`` lets librados search its defaults (``$CEPH_CONF``,
    ``/etc/ceph/ceph.conf``...); `client` is the cephx user without its
    ``client.`` prefix; `keyring` the path of its keyring (a secret: never
    shown); `timeout` the seconds any librados call may take.
    """

    pool: str
    conf: str | None = None
    client: str = "admin"
    keyring: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def parse(cls, options: Mapping[str, object]) -> Options:
        """Check `options` (a backend section or a `BackendSpec`'s options); `ConfigError`."""
        unknown = sorted(set(options) - set(_KNOWN))
        if unknown:
            raise ConfigError(f"rbd driver: unknown option(s): {', '.join(unknown)}")
        pool = options.get("pool")
        if not isinstance(pool, str) or not pool or "/" in pool or "@" in pool:
            raise ConfigError("rbd driver: option 'pool' must name an RBD pool")
        conf = _optional_path(options, "conf")
        keyring = _optional_path(options, "keyring")
        client = options.get("client", "admin")
        if not isinstance(client, str) or not client or client.startswith("client."):
            raise ConfigError(
                "rbd driver: option 'client' is the cephx user without 'client.' (e.g. admin)"
            )
        raw = options.get("timeout", DEFAULT_TIMEOUT)
        try:
            timeout = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            timeout = -1.0
        if not 0 < timeout <= 3600:
            raise ConfigError(f"rbd driver: option 'timeout' must be 0-3600 seconds, not {raw!r}")
        return cls(pool, conf, client, keyring, timeout)

    def same_cluster_as(self, other: Options) -> bool:
        """Whether `other` reaches the same cluster the same way (so one connection serves)."""
        return (self.conf, self.client, self.keyring) == (other.conf, other.client, other.keyring)

    def __repr__(self) -> str:
        return f"Options(pool={self.pool!r}, conf={self.conf!r}, client={self.client!r})"


def _optional_path(options: Mapping[str, object], name: str) -> str | None:
    value = options.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"rbd driver: option {name!r} must be a file path")
    path = os.fspath(value)
    if not os.path.isfile(path):
        raise ConfigError(f"rbd driver: {name} file {path!r} does not exist")
    return os.path.abspath(path)


class Cluster:
    """One librados connection, opened on first use; pools opened on demand."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._rados: rados.Rados | None = None
        self._pools: dict[str, rados.Ioctx] = {}

    def __repr__(self) -> str:
        return f"Cluster({self.options!r})"

    def _connect(self) -> rados.Rados:
        binding, _ = bindings()
        o = self.options
        seconds = str(max(1, round(o.timeout)))
        conf = {
            "rados_mon_op_timeout": seconds,
            "rados_osd_op_timeout": seconds,
            "client_mount_timeout": seconds,
        }
        if o.keyring:
            conf["keyring"] = o.keyring
        with errors(f"cannot connect to the Ceph cluster of {o.conf or 'the default ceph.conf'}"):
            handle: rados.Rados = binding.Rados(
                name=f"client.{o.client}", conffile=o.conf or "", conf=conf
            )
            try:
                handle.connect(timeout=max(1, round(o.timeout)))
            except BaseException:
                handle.shutdown()
                raise
        return handle

    def handle(self) -> rados.Rados:
        """The connected ``rados.Rados`` handle."""
        with self._lock:
            if self._rados is None:
                self._rados = self._connect()
            return self._rados

    def ioctx(self, pool: str | None = None) -> rados.Ioctx:
        """An I/O context on `pool` (default: the configured one); `ConfigError` if absent."""
        name = pool or self.options.pool
        handle = self.handle()
        with self._lock:
            ctx = self._pools.get(name)
            if ctx is None:
                with errors(f"cannot open pool {name!r}"):
                    if not handle.pool_exists(name):
                        raise ConfigError(f"rbd driver: the cluster has no pool {name!r}")
                    ctx = handle.open_ioctx(name)
                self._pools[name] = ctx
            return ctx

    def write_blocker(self, pool: str | None = None) -> str | None:
        """Why Ceph holds writes to `pool` (default: the configured one) now; None if not known.

        Read from the OSD map (a monitor command, answered even when every
        write waits): writes paused cluster-wide (``pausewr``), or the pool
        flagged full (an OSD past its full ratio: ``full``; its quota
        reached: ``full_quota``). Ceph neither fails nor times out such a
        write by itself: librados gives up after `Options.timeout`. None
        too when the map cannot be read.
        """
        name = pool or self.options.pool
        command = json.dumps({"prefix": "osd dump", "format": "json"})
        try:
            code, out, _ = self.handle().mon_command(
                command, b"", timeout=max(1, round(min(self.options.timeout, 10)))
            )
            dump = json.loads(out) if code == 0 else {}
        except Exception:  # a diagnosis only: the caller's error stands
            return None
        flags = set(str(dump.get("flags", "")).split(","))
        if "pausewr" in flags:
            return "the cluster's writes are paused (`ceph osd unpause` resumes them)"
        for entry in dump.get("pools", []):
            if isinstance(entry, dict) and entry.get("pool_name") == name:
                marks = set(str(entry.get("flags_names", "")).split(","))
                if "full_quota" in marks:
                    return (
                        f"pool {name!r} has reached its quota: Ceph holds every write to it"
                        " (raise the quota with `ceph osd pool set-quota`, or free space)"
                    )
                if "full" in marks:
                    return (
                        f"pool {name!r} is full (an OSD is past its full ratio): Ceph holds"
                        " every write to it until space is freed (`ceph health detail`)"
                    )
        return None

    def fsid(self) -> str:
        """The cluster's fsid (identifies it across configurations)."""
        with errors("cannot read the cluster fsid"):
            return str(self.handle().get_fsid())

    def close(self) -> None:
        """Close the pools and the connection. Idempotent."""
        with self._lock:
            pools, self._pools = self._pools, {}
            handle, self._rados = self._rados, None
        for ctx in pools.values():
            ctx.close()
        if handle is not None:
            handle.shutdown()


def short_hash(*parts: str) -> str:
    """Eight hex digits naming `parts` (used in snapshot names)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


@contextmanager
def errors(
    what: str, missing: type[NotFound] | None = None, *, absent: str | None = None
) -> Iterator[None]:
    """Re-raise the bindings' exceptions as pieceworks errors prefixed by `what`.

    A missing image becomes `missing` (when given) saying `absent` (default
    `what`), a timeout a `TransientError`, anything else from
    librados/librbd a `BackendError`; pieceworks' own errors pass through.
    `what` says what was being done (``cannot open volume 'v'``): it
    prefixes every other error, so a timeout is never reported as a
    missing volume.
    """
    rados_mod, rbd = bindings()
    try:
        yield
    except (rbd.ImageNotFound, rbd.ObjectNotFound, rados_mod.ObjectNotFound) as exc:
        if missing is not None:
            raise missing(absent or what) from None
        raise BackendError(f"{what}: {exc}") from exc
    except rados_mod.TimedOut as exc:
        raise TransientError(f"{what}: timed out: {exc}") from exc
    except (rbd.Error, rados_mod.Error) as exc:
        code = getattr(exc, "errno", None)
        if code in (errno.ETIMEDOUT, errno.EAGAIN, errno.EINTR):
            raise TransientError(f"{what}: {exc}") from exc
        raise BackendError(f"{what}: {exc}") from exc
