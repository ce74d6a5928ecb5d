"""Build what a command works on from the configuration, through entry-point discovery.

Drivers and stores are never imported by name: a section is a `DriverSpec`,
opened by the one loader (`pieceworks.common_algorithms.opening`), which
looks its ``driver`` up in the ``pieceworks.drivers`` or
``pieceworks.stores`` entry points, so a third-party driver installed with an
entry point works exactly like the reference ones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from pieceworks.cli import startup
from pieceworks.cli.config import Config, Section, load_config
from pieceworks.cli.exit_codes import CliError
from pieceworks.cli.output import Output
from pieceworks.cli.passwords import read_password
from pieceworks.cli.progress import Progress, mode_for
from pieceworks.common_algorithms.backend import Backend, Store
from pieceworks.common_algorithms.gc.leases import DEFAULT_LEASE_TTL, set_stale_after
from pieceworks.common_algorithms.opening import open_backend, open_objects, open_store
from pieceworks.protocols import (
    ConfigError,
    InvalidDriver,
    IObjectStore,
    VolumeNotFound,
    VolumeRef,
)

if TYPE_CHECKING:  # imported where used: they bring in TaskFlow
    from pieceworks.common_algorithms.runner import EngineOptions
    from pieceworks.registry.registry import Registry

__all__ = ["Context", "check_persistence"]

log = logging.getLogger(__name__)


def _summary(config: Config) -> str:
    def one(s: Section) -> str:
        options = ", ".join(f"{k}={v}" for k, v in s.masked_options().items())
        return f"{s.kind} {s.name} (driver {s.driver}, {options}; {s.origin})"

    parts = [one(s) for s in (*config.backends.values(), *config.stores.values())]
    return "; ".join([f"file {config.path or 'none'}", *parts, f"persistence {config.persistence}"])


def _make_parent(path: Path, url: str) -> None:
    """Make the directory of the SQLite persistence file `path`; `ConfigError` saying why not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from pieceworks.protocols.os_errors import os_reason  # noqa: PLC0415 (failures only)

        why = (
            f"{path.parent} is not a directory"
            if isinstance(exc, FileExistsError)
            else os_reason(exc, path.parent)
        )
        raise ConfigError(
            f"[engine] persistence {url!r} cannot be used: cannot make directory"
            f" {path.parent}: {why}"
        ) from None


def check_persistence(url: str, what: str = "[engine] persistence") -> None:
    """Open and close TaskFlow persistence at `url`; `ConfigError`/`CliError` if it fails.

    `what` names where the URL came from in the message of an unusable one.
    """
    # Imported here: TaskFlow's persistence brings in SQLAlchemy (slow to import).
    from taskflow.persistence import backends as persistence_backends  # noqa: PLC0415

    try:
        backend = persistence_backends.fetch({"connection": url})
    except Exception as exc:
        raise ConfigError(f"{what} {url!r} cannot be used: {type(exc).__name__}: {exc}") from None
    try:
        with closing(backend.get_connection()):
            pass
    except Exception as exc:
        raise CliError(
            f"cannot connect to the TaskFlow persistence backend {url!r}: {exc}"
        ) from None
    finally:
        backend.close()


def _apply(config: Config) -> None:
    """Settings of the configuration that hold process-wide: ``[leases] stale_after_seconds``."""
    set_stale_after(DEFAULT_LEASE_TTL if config.stale_after is None else config.stale_after)


class Context:
    """What a command works with: output, configuration, backends and stores.

    The configuration is read on first use (a command such as ``drivers``
    never reads it); from then on its secrets are masked in all output.
    Backends and stores are opened on first use and kept for the command.
    """

    def __init__(
        self,
        out: Output,
        env: Mapping[str, str],
        *,
        config_path: str | None = None,
        backend: str | None = None,
        store: str | None = None,
        config: Config | None = None,
        password_file: str | None = None,
    ) -> None:
        self.out = out
        self.password_file = password_file
        self.env = env
        self.config_path = config_path
        self.backend_name = backend
        self.store_name = store
        self._config = config
        if config is not None:
            out.masker.add(config.secrets)
            log.info("configuration: %s", _summary(config))
            _apply(config)
        self._backends: dict[str, Backend] = {}
        self._stores: dict[str, Store] = {}

    @property
    def config(self) -> Config:
        """The configuration, read (and its secrets registered for masking) on first use."""
        if self._config is None:
            self._config = load_config(self.config_path, self.env)
            self.out.masker.add(self._config.secrets)
            log.info("configuration: %s", _summary(self._config))
            _apply(self._config)
        return self._config

    # -- backends and stores ------------------------------------------------

    def backend(self, name: str | None = None) -> Backend:
        """The chosen backend (``--backend``, else the default), verified (`open_backend`)."""
        section = self.config.backend(name or self.backend_name)
        if section.name not in self._backends:
            self._backends[section.name] = open_backend(section)
        return self._backends[section.name]

    def all_backends(self) -> list[Backend]:
        """Every configured backend, by name."""
        return [self.backend(name) for name in sorted(self.config.backends)]

    def raw_store(
        self, name: str | None = None, *, create: bool = False
    ) -> tuple[str, IObjectStore]:
        """The chosen store's name and objects as they are stored: sealed if encrypted.

        `create` as for `store`.
        """
        section = self.config.store(name or self.store_name)
        return section.name, open_objects(section, create=create)

    def store(
        self,
        name: str | None = None,
        *,
        source: bool = False,
        password_file: str | None = None,
        create: bool = False,
    ) -> Store:
        """The chosen store (``--store``, else the default), with its `StoreSpec`.

        A store whose storage (directory, container, bucket) does not exist
        is `StoreMissing` (exit 3, naming it) and nothing is created, unless
        `create`: only commands that write new backups (backup, the target
        of copy, replicate's run store, key init, demo) pass it. The
        built-in default store is made either way (its `default_dirs`).
        An encrypted store (one with key files) is opened with its passphrase
        (`read_password`; `source` and `password_file` choose where it comes
        from for the store ``copy`` reads) and returned as an
        `EncryptedStore`; a wrong passphrase is `WrongPassword` (exit 2)
        before anything is read.
        """
        section = self.config.store(name or self.store_name)
        if section.name not in self._stores:

            def passphrase() -> str:
                return read_password(
                    self.out,
                    self.env,
                    section.name,
                    password_file if source else self.password_file,
                    source=source,
                    configured=section.password_file,
                )

            self._stores[section.name] = open_store(section, passphrase, create=create)
        return self._stores[section.name]

    def opened_stores(self) -> list[Store]:
        """The stores this command has opened so far (`store`), by name."""
        return [self._stores[name] for name in sorted(self._stores)]

    def registry(self) -> Registry:
        """A registry holding every configured backend's registrations.

        Each backend is registered with `register_backend` against the
        chosen store; one that completes no backup or restore is left out
        with a warning.
        """
        from pieceworks.common_algorithms.operations.registration import register_backend  # noqa: PLC0415
        from pieceworks.registry.registry import Registry  # noqa: PLC0415

        registry = Registry()
        store = self.store()
        for backend in self.all_backends():
            try:
                register_backend(registry, backend, store)
            except InvalidDriver as exc:
                self.out.warn(f"backend '{backend.name}' is not registered: {exc}")
        return registry

    def require_volume(self, backend: Backend, volume_id: str) -> None:
        """Fail early, listing the volumes, if a driver that can list them lacks `volume_id`."""
        known = self.volumes(backend)
        if known is not None and volume_id not in known:
            listed = ", ".join(known) or "none"
            raise VolumeNotFound(
                f"unknown volume '{volume_id}' on backend '{backend.name}' (volumes: {listed})"
            )

    @staticmethod
    def volumes(backend: Backend) -> list[str] | None:
        """Volume ids of a driver with a ``list_volumes()`` helper; None if it has none."""
        lister = getattr(backend.driver, "list_volumes", None)
        if not callable(lister):
            return None
        found = lister()
        return [v.volume_id if isinstance(v, VolumeRef) else str(v) for v in found]

    # -- running -------------------------------------------------------------

    def engine_options(self) -> EngineOptions:
        """TaskFlow engine and persistence from ``[engine]`` (no persistence by default).

        The persistence backend is opened once here, so that a bad connection
        string is a configuration error (exit 2) and an unreachable database
        one clear message (exit 1), before any work starts. The engine is
        imported here too, and the command's start-up ends
        (`pieceworks.cli.startup.done`): the flow runs next.
        """
        from pieceworks.common_algorithms.runner import EngineOptions, load_engine  # noqa: PLC0415

        url = self.config.persistence
        if url:
            if url.startswith("sqlite:///"):
                _make_parent(Path(url.removeprefix("sqlite:///")), url)
            check_persistence(url)
        options = EngineOptions(persistence=url, engine=self.config.engine)
        try:
            load_engine(options.engine)
        except ValueError as exc:  # [engine] engine is checked: TaskFlow is not installed whole
            raise CliError(f"cannot run flows: {exc}; reinstall pieceworks") from None
        startup.done()  # the flow runs next: the imports are over
        return options

    def progress(self, label: str) -> Progress:
        """A progress display on stderr for one operation (a bar on a terminal)."""
        return Progress(label, self.out.stderr, mode_for(self.out.stderr, self.out.quiet))

    def describe(self) -> Mapping[str, object]:
        """The effective configuration, secrets masked, for ``pieceworks config``."""

        def section(s: Section) -> dict[str, object]:
            return {"driver": s.driver, "origin": s.origin, **s.masked_options()}

        return {
            "config_file": str(self.config.path) if self.config.path else None,
            "home": str(self.config.home),
            "backends": {n: section(s) for n, s in sorted(self.config.backends.items())},
            "stores": {n: section(s) for n, s in sorted(self.config.stores.items())},
            "engine": {"engine": self.config.engine, "persistence": self.config.persistence},
        }
