"""The configuration: a TOML file, environment variables and built-in defaults.

Where it comes from, first match wins: ``--config FILE``, the file named by
``PIECEWORKS_CONFIG``, ``~/.config/pieceworks/pieceworks.toml`` if it exists;
else nothing (built-in defaults only). The file is UTF-8 (one leading
byte-order mark is skipped); ``~`` and ``~user`` in its paths, the
option and the variables are expanded (an unknown user is a `ConfigError`).
A file looks like::

    [backends.lab]          # a backend: a driver and its options
    driver = "file"
    path = "/srv/volumes"

    [stores.lab]            # a store: a store driver and its options
    driver = "posix"
    path = "/srv/backups"
    password_file = "/etc/pieceworks/lab.pass"   # if encrypted (optional)

    [engine]                # optional
    persistence = "sqlite:////var/lib/pieceworks/pieceworks.db"
    engine = "serial"       # or "parallel"

    [backup]                # optional
    guard_sample = 1        # percent of skipped chunks re-read to catch a lying
                            # driver (changed-blocks, allocated-extents); 0: off
    guard_max_chunks = 128  # ... but at most this many chunks of each kind

    [jobs]                  # optional: running at scale (pieceworks jobs/conductor/worker)
    jobboard = "redis://10.0.0.5:6379/pieceworks"
    persistence = "postgresql://pw@10.0.0.6/pieceworks"
    transport = "amqp://pw:secret@10.0.0.7/"   # workers (RabbitMQ)
    claim_expiry = 30       # seconds a dead conductor's claim survives
    keep_finished = 86400   # seconds a finished job's logbook is kept

    [leases]                # optional: who holds a store
    stale_after_seconds = 120   # an owner on another host that has not renewed
                                # its lease or lock for this long is dead

A ``path`` option (a backend's or store's directory) may start with ``~``
and, when relative, is relative to the configuration file's directory, as
``password_file`` is. Every key of a backend or store section except ``driver`` (and a store's
``password_file``: the file holding an encrypted store's passphrase, relative
to the configuration file's directory; what a conductor opens the store with,
since jobs carry no secret) is passed to the driver's entry point as a
keyword argument; a store section is also the
`StoreSpec` handed to backends that reach the store themselves. A kind of
section the file does not have (no ``[backends.*]``, say) gets the default:
backend ``local`` (driver ``file``, ``$PIECEWORKS_HOME/volumes``) and store
``local`` (driver ``posix``, ``$PIECEWORKS_HOME/backups``), where
``PIECEWORKS_HOME`` defaults to ``~/.local/share/pieceworks``.

Without ``[engine] persistence`` a command runs its flow without TaskFlow
persistence (in memory): nothing resumes a command-line run from a logbook,
and opening SQLite and recording every atom cost about half a second per
command. An interrupted backup still costs little to redo: the chunks it
stored are found intact and not sent again (docs/format.md). Set
``persistence`` to record runs (``sqlite:////path/pieceworks.db``) or to
share them with conductors (``postgresql://...``).

``[leases] stale_after_seconds`` (default 120, at most 86400) is how long a
lease, collector lock or run journal of an owner on another host stays
valid without a renewal; owners renew every quarter of it (at most every
20 s). An owner on this host is known dead or alive at once, whatever the
setting. Every host sharing a store should use the same value.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from pieceworks.cli.masking import is_secret_name, url_password
from pieceworks.cli.options import MAX_SECONDS
from pieceworks.common_algorithms.opening import (
    DriverSpec,
    OptionValue,
    check_options,
    value_kind,
)
from pieceworks.protocols import (
    BackendNotFound,
    ConfigError,
    InvalidName,
    StoreNotFound,
    validate_id,
)
from pieceworks.protocols.user_paths import expand_user

__all__ = [
    "CONFIG_FILE_LIMIT",
    "DEFAULT_NAME",
    "ENGINES",
    "DEFAULT_KEEP_FINISHED",
    "PASSWORD_FILE_KEY",
    "Config",
    "JobsConfig",
    "Section",
    "check_options",
    "default_config_path",
    "home_dir",
    "load_config",
]

#: The name the default backend and store have, and the one chosen among several.
DEFAULT_NAME = "local"
ENGINES = ("serial", "parallel")
_ENGINE_KEYS = {"persistence", "engine"}
_TOP_KEYS = {"backends", "stores", "engine", "jobs", "leases", "backup"}
_LEASES_KEYS = {"stale_after_seconds"}
_BACKUP_KEYS = {"guard_sample", "guard_max_chunks"}
#: The longest ``[leases] stale_after_seconds`` accepted (a day).
MAX_STALE_AFTER = 86400.0
_JOBS_KEYS = {"jobboard", "persistence", "transport", "claim_expiry", "keep_finished"}
#: Seconds a finished job's logbook is kept by default (a day).
DEFAULT_KEEP_FINISHED = 86400.0
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")

#: The most bytes a configuration file may hold (1 MiB); a larger one is refused unread.
CONFIG_FILE_LIMIT = 2**20
#: The option naming a section's directory; relative: to the configuration file's directory.
PATH_KEY = "path"
#: The key of a store section naming its passphrase file (not a driver option).
PASSWORD_FILE_KEY = "password_file"


def home_dir(env: Mapping[str, str]) -> Path:
    """``$PIECEWORKS_HOME``, else ``~/.local/share/pieceworks`` (not created here)."""
    home = env.get("PIECEWORKS_HOME")
    if home:
        return expand_user(home, "PIECEWORKS_HOME").absolute()
    base = expand_user(env.get("HOME") or Path.home(), "HOME")
    return base / ".local" / "share" / "pieceworks"


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/pieceworks/pieceworks.toml`` (``~/.config`` by default)."""
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg:
        return expand_user(xdg, "XDG_CONFIG_HOME") / "pieceworks" / "pieceworks.toml"
    base = expand_user(env.get("HOME") or Path.home(), "HOME")
    return base / ".config" / "pieceworks" / "pieceworks.toml"


@dataclass(frozen=True)
class Section(DriverSpec):
    """One configured backend or store (a `DriverSpec`: name, driver, options, origin).

    `origin` says where it was defined, for messages (``/etc/pw.toml
    [stores.lab]`` or ``built-in default``); `default_dirs` are directories
    to create before the driver is opened (only for the built-in defaults).
    `password_file` (stores only) is the absolute path of the file holding
    the store's passphrase if it is encrypted, not an option of the driver.
    """

    def masked_options(self) -> dict[str, OptionValue | str]:
        """The options with secret values replaced by ``***``."""
        return {k: ("***" if is_secret_name(k) else v) for k, v in self.options.items()}


@dataclass(frozen=True)
class JobsConfig:
    """The ``[jobs]`` section: where jobs are posted, persisted and run (all optional).

    `jobboard` is a ``redis://host:port/namespace`` URL, `persistence` a
    TaskFlow persistence URL (PostgreSQL), `transport` the workers' message
    broker (``amqp://``); `claim_expiry` and `keep_finished` are seconds.
    """

    jobboard: str | None = None
    persistence: str | None = None
    transport: str | None = None
    claim_expiry: float | None = None
    keep_finished: float = DEFAULT_KEEP_FINISHED


@dataclass(frozen=True)
class Config:
    """The effective configuration: backends and stores by name, engine settings."""

    path: Path | None
    home: Path
    backends: Mapping[str, Section]
    stores: Mapping[str, Section]
    persistence: str | None
    engine: str = "serial"
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    #: ``[leases] stale_after_seconds``; None: not set (the built-in 120 s).
    stale_after: float | None = None
    #: ``[backup] guard_sample``, percent (None: not set, the built-in default)
    guard_sample: float | None = None
    #: ``[backup] guard_max_chunks`` (None: not set, the built-in default)
    guard_max_chunks: int | None = None

    def backend(self, name: str | None) -> Section:
        """The backend called `name`, or the default one (see `choose`)."""
        return _choose(self.backends, name, "backend", "--backend", self._where())

    def store(self, name: str | None) -> Section:
        """The store called `name`, or the default one (see `choose`)."""
        return _choose(self.stores, name, "store", "--store", self._where())

    def _where(self) -> str:
        return f"in {self.path}" if self.path else "(no configuration file: built-in defaults)"


def _choose(
    sections: Mapping[str, Section], name: str | None, kind: str, flag: str, where: str
) -> Section:
    """`name`'s section; without a name the only one, or the one called ``local``."""
    names = ", ".join(sorted(sections)) or "none"
    if name is not None:
        if name in sections:
            return sections[name]
        error = BackendNotFound if kind == "backend" else StoreNotFound
        raise error(f"unknown {kind} '{name}' {where}; configured {kind}s: {names}")
    if len(sections) == 1:
        return next(iter(sections.values()))
    if DEFAULT_NAME in sections:
        return sections[DEFAULT_NAME]
    raise ConfigError(
        f"several {kind}s are configured and none is called '{DEFAULT_NAME}': choose one with"
        f" {flag} NAME (configured {kind}s: {names})"
    )


def _config_path(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        if not explicit.strip():  # --config "": not "no option" (the defaults), a mistake
            raise ConfigError("--config must name a configuration file, not an empty path")
        return _config_file(expand_user(explicit, "--config"), "--config")
    from_env = env.get("PIECEWORKS_CONFIG")
    if from_env:
        return _config_file(expand_user(from_env, "PIECEWORKS_CONFIG"), "PIECEWORKS_CONFIG")
    default = default_config_path(env)  # used if it exists; a directory there is a mistake
    return _config_file(default, "the default location") if default.exists() else None


def _config_file(path: Path, given_by: str) -> Path:
    """`path` if it is a regular file; else `ConfigError` saying what it is instead."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        problem = "does not exist"
    except OSError as exc:  # a link loop, a file where a directory of the path should be
        from pieceworks.protocols.os_errors import os_reason  # noqa: PLC0415 (failures only)

        problem = f"cannot be used: {os_reason(exc, path)}"
    else:
        if stat.S_ISREG(mode):
            return path
        problem = "is a directory, not a file" if stat.S_ISDIR(mode) else "is not a regular file"
    raise ConfigError(f"configuration file {path} ({given_by}) {problem}")


def _parse(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as f:  # bounded: a disk image named by mistake is not read whole
            data = f.read(CONFIG_FILE_LIMIT + 1)
    except OSError as exc:
        from pieceworks.protocols.os_errors import os_reason  # noqa: PLC0415 (only on failure)

        raise ConfigError(
            f"cannot read configuration file {path}: {os_reason(exc, path)}"
        ) from None
    if len(data) > CONFIG_FILE_LIMIT:
        raise ConfigError(
            f"configuration file {path} is larger than {CONFIG_FILE_LIMIT // 2**20} MiB:"
            " not a configuration file"
        )
    try:
        text = data.decode("utf-8-sig")  # one leading byte-order mark is skipped
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read configuration file {path}: it is not UTF-8 text") from None
    import tomllib  # noqa: PLC0415 (about 10 ms: only a command that has a file to read pays)

    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(
            f"configuration file {path}: arrays or tables nested too deeply"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        found = _TOML_POSITION.search(message)
        if found:
            message = message[: found.start()]
            line, col = int(found.group(1)), int(found.group(2))
        where = f", line {line}, column {col}" if line is not None else ""
        raise ConfigError(f"configuration file {path}{where}: {message}") from None


def _sections(data: Mapping[str, object], kind: str, table: str, path: Path) -> dict[str, Section]:
    raw = data.get(table, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration file {path}: [{table}] must be a table of {kind}s")
    out: dict[str, Section] = {}
    for name, body in raw.items():
        origin = f"{path} [{table}.{name}]"
        try:
            validate_id(f"{kind} name", name)
        except InvalidName as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: must be a table with a 'driver' key")
        driver = body.get("driver")
        if driver is not None and (not isinstance(driver, str) or not driver.strip()):
            raise ConfigError(
                f"{origin}: 'driver' must be the entry point name of a driver, not {driver!r}"
            )
        if not isinstance(driver, str):
            raise ConfigError(f"{origin}: missing 'driver' (the entry point name of the driver)")
        password_file = _password_file(body, kind, origin, path)
        options: dict[str, OptionValue] = {}
        for key, value in body.items():
            if key in ("driver", PASSWORD_FILE_KEY):
                continue
            if not isinstance(value, str | int | float | bool):
                raise ConfigError(
                    f"{origin}: option '{key}' must be a string, number or boolean,"
                    f" not a {type(value).__name__}"
                )
            is_path = key == PATH_KEY and isinstance(value, str)
            options[key] = _option_path(str(value), origin, path) if is_path else value
        out[name] = Section(
            cast(Literal["backend", "store"], kind),
            name,
            driver,
            options,
            origin,
            password_file=password_file,
        )
    return out


def _option_path(value: str, origin: str, path: Path) -> str:
    """A section's ``path`` option, absolute: ``~`` expanded, relative to the file's directory.

    As `_password_file`: the same file means the same directories from any
    working directory (a relative path once made a new, empty store in it,
    and ``~/backups`` a directory called ``~``). `ConfigError` if blank.
    """
    if not value.strip():
        raise ConfigError(f"{origin}: '{PATH_KEY}' must not be empty")
    return str(path.parent.absolute() / expand_user(value, f"{origin}: '{PATH_KEY}'"))


def _password_file(body: Mapping[str, object], kind: str, origin: str, path: Path) -> str | None:
    """A store section's ``password_file``, absolute (relative: to the file's directory)."""
    value = body.get(PASSWORD_FILE_KEY)
    if value is None:
        return None
    if kind != "store":
        raise ConfigError(f"{origin}: '{PASSWORD_FILE_KEY}' belongs in a store's section")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{origin}: '{PASSWORD_FILE_KEY}' must be the path of a file")
    return str(path.parent.absolute() / expand_user(value, f"{origin}: '{PASSWORD_FILE_KEY}'"))


def _table(data: Mapping[str, object], name: str, known: set[str], path: Path) -> dict[str, object]:
    """Top-level section ``[name]`` (empty if absent); `ConfigError` if it is not a table
    or has a key outside `known` (each named, with the known ones)."""
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration file {path}: [{name}] must be a table")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{path} [{name}]: unknown key(s) {', '.join(unknown)}"
            f" (known: {', '.join(sorted(known))})"
        )
    return raw


def _engine(data: Mapping[str, object], path: Path) -> tuple[str | None, str | None]:
    raw = _table(data, "engine", _ENGINE_KEYS, path)
    persistence, engine = raw.get("persistence"), raw.get("engine")
    if persistence is not None and not isinstance(persistence, str):
        raise ConfigError(f"{path} [engine]: persistence must be a connection string")
    if engine is not None and engine not in ENGINES:
        raise ConfigError(f"{path} [engine]: engine must be one of {', '.join(ENGINES)}")
    return persistence, engine


def _backup(data: Mapping[str, object], path: Path) -> tuple[float | None, int | None]:
    """``[backup] guard_sample`` (percent in [0, 100]) and ``guard_max_chunks`` (an
    integer of at least 1), each None if not set."""
    raw = _table(data, "backup", _BACKUP_KEYS, path)
    value = raw.get("guard_sample")
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= 100  # NaN fails too
    ):
        raise ConfigError(
            f"{path} [backup]: guard_sample must be a number of percent from 0 (off) to 100,"
            f" not {value!r}"
        )
    cap = raw.get("guard_max_chunks")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ConfigError(
            f"{path} [backup]: guard_max_chunks must be a whole number of chunks, at least 1,"
            f" not {cap!r}"
        )
    return (None if value is None else float(value)), cap


#: The most seconds ``[jobs] keep_finished`` may be: 100 years (finite, and a date).
_MAX_KEEP_SECONDS = 100 * 365 * 86400


def _jobs(data: Mapping[str, object], path: Path) -> JobsConfig:
    raw = _table(data, "jobs", _JOBS_KEYS, path)
    urls: dict[str, str | None] = {}
    for key in ("jobboard", "persistence", "transport"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or "://" not in value):
            raise ConfigError(f"{path} [jobs]: {key} must be a URL (scheme://...)")
        urls[key] = value
    seconds: dict[str, float | None] = {}
    # A claim expiry is a timing as --claim-expiry is (at most MAX_SECONDS); how long
    # finished logbooks are kept may be years, but not nan or inf.
    for key, most in (("claim_expiry", MAX_SECONDS), ("keep_finished", _MAX_KEEP_SECONDS)):
        value = raw.get(key)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= most  # nan and inf fail it too
        ):
            raise ConfigError(
                f"{path} [jobs]: {key} must be a positive finite number of seconds, at most"
                f" {most}, not {value!r}"
            )
        seconds[key] = None if value is None else float(value)
    return JobsConfig(
        jobboard=urls["jobboard"],
        persistence=urls["persistence"],
        transport=urls["transport"],
        claim_expiry=seconds["claim_expiry"],
        keep_finished=seconds["keep_finished"] or DEFAULT_KEEP_FINISHED,
    )


def _leases(data: Mapping[str, object], path: Path) -> float | None:
    raw = _table(data, "leases", _LEASES_KEYS, path)
    value = raw.get("stale_after_seconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{path} [leases]: stale_after_seconds must be a number of seconds,"
            f" not {value_kind(value)}"
        )
    if not 0 < value <= MAX_STALE_AFTER:  # NaN fails this too
        raise ConfigError(
            f"{path} [leases]: stale_after_seconds must be more than 0 and at most"
            f" {MAX_STALE_AFTER:g} seconds, not {value!r}"
        )
    return float(value)


def _secrets(sections: list[Section], persistence: str | None) -> frozenset[str]:
    found: set[str] = set()
    for s in sections:
        for key, value in s.options.items():
            if isinstance(value, str):
                if is_secret_name(key):
                    found.add(value)
                elif (pw := url_password(value)) is not None:
                    found.add(pw)
    if persistence and (pw := url_password(persistence)) is not None:
        found.add(pw)
    return frozenset(found)


def defaults(home: Path) -> tuple[dict[str, Section], dict[str, Section], str | None]:
    """The built-in backend and store under `home`, and no persistence (see the module)."""
    volumes, backups = home / "volumes", home / "backups"
    backend = Section(
        "backend", DEFAULT_NAME, "file", {"path": str(volumes)}, "built-in default", (volumes,)
    )
    store = Section(
        "store", DEFAULT_NAME, "posix", {"path": str(backups)}, "built-in default", (backups,)
    )
    return {DEFAULT_NAME: backend}, {DEFAULT_NAME: store}, None


def load_config(explicit: str | None, env: Mapping[str, str]) -> Config:
    """Read the configuration (see the module docstring); `ConfigError` if it is bad."""
    home = home_dir(env)
    backends, stores, persistence = defaults(home)
    engine = "serial"
    jobs = JobsConfig()
    stale_after: float | None = None
    guard_sample: float | None = None
    guard_max_chunks: int | None = None
    path = _config_path(explicit, env)
    if path is not None:
        data = _parse(path)
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ConfigError(
                f"configuration file {path}: unknown section(s) {', '.join(unknown)}"
                " (known: backends, stores, engine, jobs, leases, backup)"
            )
        backends = _sections(data, "backend", "backends", path) or backends
        stores = _sections(data, "store", "stores", path) or stores
        given_persistence, given_engine = _engine(data, path)
        persistence = given_persistence or persistence
        engine = given_engine or engine
        jobs = _jobs(data, path)
        stale_after = _leases(data, path)
        guard_sample, guard_max_chunks = _backup(data, path)
    secrets = _secrets([*backends.values(), *stores.values()], persistence)
    for url in (jobs.jobboard, jobs.persistence, jobs.transport):
        if url and (pw := url_password(url)) is not None:
            secrets |= {pw}
    return Config(
        path,
        home,
        backends,
        stores,
        persistence,
        engine,
        secrets,
        jobs,
        stale_after,
        guard_sample,
        guard_max_chunks,
    )
