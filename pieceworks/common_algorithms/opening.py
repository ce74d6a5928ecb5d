"""One loader from spec to object: a configured backend or store, opened by entry point.

    backend = open_backend(DriverSpec("backend", "lab", "file", {"path": "/srv"}, origin))
    store = open_store(spec, passphrase=lambda: read_it_somehow())

A `DriverSpec` is what a configuration section says (kind, name, driver,
options with their TOML types, where it was defined); the command line's
sections (`pieceworks.cli.config.Section`) are specs, and so is what a
conductor's host resolves a job's names to (`spec_from`). The driver is
found by entry-point name (`load_factory`: ``pieceworks.drivers`` or
``pieceworks.stores``) and called with the options as keyword arguments.

Every way opening can go wrong because of the configuration is one
`ConfigError` that starts with the spec's `origin` (``/etc/pw.toml
[stores.lab]``) and never shows an option's value (options may hold
credentials): an unknown or broken driver, an option of the wrong type or
refused by the driver, a driver that is not one. A failure of the backend
or store itself (unreachable, say) is a `BackendError` (exit 1).

A store is opened with ``create=True`` (its driver makes a missing
directory, container or bucket: what a backup wants) or ``create=False``
(what every command that only reads wants): then a store whose storage does
not exist is `StoreMissing` (exit 3) naming the configured store, its origin
and what is missing, and nothing is created. `create` is the store driver's
own keyword option (``posix``, ``swift`` and ``s3`` take it); a store
section may set ``create = false`` itself, and then not even a backup
creates it. A driver without the option is opened as it always was. The
built-in default store's directory is made whatever `create` says
(`DriverSpec.default_dirs`): a first run works as it always did.

An encrypted store (one with key files) is opened with the passphrase the
`passphrase` callback gives, called only then (the command line prompts or
reads the environment; a conductor reads the spec's `password_file`);
without one it is a `ConfigError` saying what to configure. Below this
layer, `pieceworks.drivers.store_opener.open_store` opens a store from a
`StoreSpec` (strings) for a backend that reaches a store itself.
"""

from __future__ import annotations

import logging
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from pieceworks.protocols import (
    BackendError,
    BackendSpec,
    ConfigError,
    DriverNotFound,
    InvalidDriver,
    InvalidName,
    IObjectStore,
    StoreMissing,
    StoreSpec,
)
from pieceworks.protocols.namespaces import DRIVERS_NAMESPACE, STORES_NAMESPACE

if TYPE_CHECKING:  # imported where used: the configuration (``--help``) needs only specs
    from pieceworks.common_algorithms.backend import Backend, Store

__all__ = [
    "CREATE_OPTION",
    "DriverSpec",
    "OptionValue",
    "Resolver",
    "SectionRef",
    "check_options",
    "job_spec",
    "load_driver",
    "open_backend",
    "open_objects",
    "open_store",
    "password_file_passphrase",
    "spec_from",
    "value_kind",
]

log = logging.getLogger(__name__)

#: A value an option may take (what TOML gives).
OptionValue = str | int | float | bool
#: Gives an encrypted store's passphrase; raises when there is none (`password_file_passphrase`:
#: `ConfigError`; the command line's callback: a usage error, the passphrase being an input).
Passphrase = Callable[[], str]


@dataclass(frozen=True)
class DriverSpec:
    """A backend or store to open: its name, driver and the driver's options.

    `kind` is ``"backend"`` or ``"store"``; `options` are the driver's
    keyword arguments; `origin` says where it was defined, for messages
    (``/etc/pw.toml [stores.lab]``, ``built-in default``); `default_dirs`
    are directories to create before the driver is opened (only for
    built-in defaults); `password_file` (stores only) is the absolute path
    of the file holding the store's passphrase if it is encrypted.
    """

    kind: Literal["backend", "store"]
    name: str
    driver: str
    options: Mapping[str, OptionValue]
    origin: str
    default_dirs: tuple[Path, ...] = ()
    password_file: str | None = None

    def spec_options(self) -> dict[str, str]:
        """The options as strings, for a `StoreSpec` (``true``/``false`` for booleans)."""
        return {
            k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in self.options.items()
        }


def spec_from(kind: str, description: Mapping[str, Any], origin: str) -> DriverSpec:
    """The spec a mapping ``{"name", "driver", "options", "password_file"?, "origin"?}`` gives.

    Raise `ConfigError` (naming `origin`, or the mapping's own) if a key is
    missing or of the wrong type.
    """
    where = str(description.get("origin") or origin)
    if kind not in ("backend", "store"):
        raise ConfigError(f"{where}: unknown kind {kind!r} (backend or store)")
    name, driver = description.get("name"), description.get("driver")
    options = description.get("options", {})
    if not isinstance(name, str) or not isinstance(driver, str) or not driver:
        raise ConfigError(f"{where}: a {kind} needs a name and a driver")
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: a {kind}'s options must be a table")
    password_file = description.get("password_file")
    return DriverSpec(
        cast(Literal["backend", "store"], kind),
        name,
        driver,
        dict(options),
        where,
        password_file=None if password_file is None else str(password_file),
    )


#: The store drivers' option saying whether opening makes a missing store (see the module).
CREATE_OPTION: Final = "create"

#: Turns ``(kind, name)`` (kind ``"backend"`` or ``"store"``) into the host's
#: ``{"name", "driver", "options"}`` for it (``origin`` and a store's
#: ``password_file`` if it has them); raises `ConfigError` for a name the
#: host does not configure.
Resolver = Callable[[str, str], Mapping[str, Any]]
#: How a job refers to a backend or store: its name (or, in jobs posted
#: before names, the whole description).
SectionRef = str | Mapping[str, Any]


def job_spec(kind: str, ref: SectionRef, resolve: Resolver | None) -> DriverSpec:
    """What a job's backend or store `ref` stands for on this host, as a `DriverSpec`.

    A name is resolved by `resolve` (the host's configuration: its
    ``origin`` names the section in messages); a description (jobs posted
    before names) is taken as it is. Raise `ConfigError` for a name without
    `resolve`, or one `resolve` does not know.
    """
    if not isinstance(ref, str):
        return spec_from(kind, ref, f"the job's {kind} description")
    if resolve is None:
        raise ConfigError(
            f"the job names {kind} {ref!r}: only a conductor that has it in its"
            " configuration can build this flow"
        )
    return spec_from(kind, resolve(kind, ref), f"this host's {kind} {ref!r}")


def load_driver(spec: DriverSpec, *, create: bool = True) -> object:
    """`spec`'s driver (a backend's driver, or a store's objects as stored), built.

    For a store, ``create=False`` is passed to a driver that takes a
    `create` option (see the module): a missing store is then `StoreMissing`,
    raised again with the configured name and ``spec.origin`` in front.
    Raise `ConfigError` (naming ``spec.origin``) for an unknown or broken
    driver or options it refuses, `BackendError` if it fails otherwise.
    """
    from pieceworks.registry.discovery import DriverLoadError, load_factory  # noqa: PLC0415

    namespace = DRIVERS_NAMESPACE if spec.kind == "backend" else STORES_NAMESPACE
    what = "driver" if spec.kind == "backend" else "store driver"
    try:
        factory = load_factory(spec.driver, namespace)
    except DriverNotFound as exc:
        raise ConfigError(f"{spec.origin}: unknown {what} '{spec.driver}': {exc}") from None
    except DriverLoadError as exc:
        raise ConfigError(f"{spec.origin}: {what} '{spec.driver}' is broken: {exc}") from None
    check_options(spec, factory)
    for directory in spec.default_dirs:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # $PIECEWORKS_HOME a file, or not writable
            raise ConfigError(
                f"{spec.origin} {spec.kind} '{spec.name}': cannot make directory {directory}:"
                f" {exc.strerror or exc}"
            ) from None
    options = dict(spec.options)
    if spec.kind == "store" and not create:
        if _takes_option(factory, CREATE_OPTION):
            options[CREATE_OPTION] = False  # over the section's own: never create here
        else:
            log.debug("store driver %r has no create option: opened as it is", spec.driver)
    try:
        return factory(**options)
    except StoreMissing as exc:
        raise StoreMissing(
            f"{spec.origin}: store '{spec.name}': {exc}", exc.location, spec.name
        ) from None
    except (ConfigError, InvalidName, TypeError, ValueError) as exc:
        raise ConfigError(f"{spec.origin}: {exc}") from None
    except Exception as exc:
        raise BackendError(f"{spec.origin}: cannot open {spec.kind} '{spec.name}': {exc}") from None


def open_backend(spec: DriverSpec) -> Backend:
    """The backend `spec` describes, its driver verified (`InvalidDriver` → `ConfigError`)."""
    from pieceworks.common_algorithms.backend import Backend  # noqa: PLC0415

    driver = load_driver(spec)
    try:
        return Backend.of(
            spec.name, driver, BackendSpec(spec.name, spec.driver, spec.spec_options())
        )
    except InvalidDriver as exc:
        raise ConfigError(f"{spec.origin}: {exc}") from None


def open_objects(spec: DriverSpec, *, create: bool = True) -> IObjectStore:
    """The store's objects as they are stored (sealed if it is encrypted).

    `create`: see `load_driver` (False: `StoreMissing` for a store that does
    not exist, nothing created).
    """
    objects = load_driver(spec, create=create)
    if not IObjectStore.providedBy(objects):
        raise ConfigError(
            f"{spec.origin}: store driver '{spec.driver}' returned {type(objects).__name__},"
            " which does not provide the object-store capability"
        )
    return objects


def password_file_passphrase(spec: DriverSpec) -> Passphrase:
    """A `passphrase` callback reading ``spec.password_file`` (a host's configuration)."""

    def read() -> str:
        from pieceworks.common_algorithms.keys import passphrase_from_file  # noqa: PLC0415

        if not spec.password_file:
            raise ConfigError(
                f"{spec.origin}: store '{spec.name}' is encrypted and this host's configuration"
                " gives no passphrase for it: set password_file in its section (or"
                " $PIECEWORKS_PASSWORD_FILE for the conductor)"
            )
        return passphrase_from_file(spec.password_file)

    return read


def open_store(
    spec: DriverSpec, passphrase: Passphrase | None = None, *, create: bool = True
) -> Store:
    """The store `spec` describes, with its `StoreSpec`; an encrypted one unlocked.

    `passphrase` is called only if the store is encrypted (default: read
    ``spec.password_file``). `create`: whether a store that does not exist
    is made (a backup) or is `StoreMissing` (a command that reads; nothing
    is created); see `load_driver`. Raise `ConfigError` as `load_driver`
    does, and for a wrong passphrase (`WrongPassword`); a missing one raises
    what `passphrase` raises (`ConfigError` by default).
    """
    from pieceworks.common_algorithms.backend import Store  # noqa: PLC0415
    from pieceworks.common_algorithms.keys import is_encrypted, unlock  # noqa: PLC0415
    from pieceworks.protocols.encrypted_store import EncryptedStore  # noqa: PLC0415

    objects = open_objects(spec, create=create)
    if is_encrypted(objects):
        password = (passphrase or password_file_passphrase(spec))()
        objects = EncryptedStore(objects, unlock(objects, password))
    try:
        return Store(spec.name, objects, StoreSpec(spec.name, spec.driver, spec.spec_options()))
    except InvalidDriver as exc:
        raise ConfigError(f"{spec.origin}: {exc}") from None


def _takes_option(factory: Callable[..., object], name: str) -> bool:
    """Whether `factory` declares the keyword parameter `name` (not merely ``**kwargs``)."""
    import inspect  # noqa: PLC0415 (only when a driver is opened)

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    found = params.get(name)
    return found is not None and found.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _accepted(hint: object) -> set[type] | None:
    """The TOML value types an annotation accepts, or None if it says nothing checkable."""
    if hint is type(None):
        return set()
    origin = typing.get_origin(hint)
    if origin is typing.Union or isinstance(hint, types.UnionType):
        out: set[type] = set()
        for arg in typing.get_args(hint):
            part = _accepted(arg)
            if part is None:
                return None
            out |= part
        return out
    if hint is str or hint is Path or hint is os.PathLike or origin is os.PathLike:
        return {str}
    if hint is bool:
        return {bool}
    if hint is int:
        return {int}
    if hint is float:
        return {int, float}
    return None


def value_kind(value: object) -> str:
    """``a string``, ``an integer``...: what a TOML value is, for messages (never the value)."""
    return _KIND_NAMES.get(type(value), f"a {type(value).__name__}")


def check_options(spec: DriverSpec, factory: Callable[..., object]) -> None:
    """`ConfigError` naming the spec's origin and key if an option has a type `factory` refuses.

    The types come from the factory's annotations (``path: str |
    os.PathLike[str]`` accepts a TOML string only, ``retries: int | str`` an
    integer or a string); an option without a checkable annotation is left
    to the factory. The message never shows the value (it may be a secret).
    """
    import inspect  # noqa: PLC0415 (only when a driver is opened)

    target = cast(Any, factory).__init__ if isinstance(factory, type) else factory
    try:
        hints = typing.get_type_hints(target)
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError, NameError):
        return
    _check_option_names(spec, params)
    for key, value in spec.options.items():
        if key not in params:
            continue
        accepted = _accepted(hints.get(key, typing.Any))
        if not accepted:
            continue
        ok = isinstance(value, tuple(accepted)) and not (
            isinstance(value, bool) and bool not in accepted
        )
        if not ok:
            wanted = " or ".join(_KIND_NAMES[t] for t in (str, int, float, bool) if t in accepted)
            raise ConfigError(
                f"{spec.origin}: option '{key}' must be {wanted}, not {value_kind(value)}"
            )


def _check_option_names(spec: DriverSpec, params: Mapping[str, Any]) -> None:
    """`ConfigError` naming options the factory does not take and ones it needs but lacks.

    What ``factory(**options)`` would refuse with Python's words
    (``PosixStore.__init__() missing 1 required positional argument: 'path'``,
    which did not name the misspelt ``pathh`` beside it), said in the
    configuration's.
    """
    import inspect  # noqa: PLC0415

    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes = [name for name, p in params.items() if p.kind in named]
    what = "driver" if spec.kind == "backend" else "store driver"
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(key for key in spec.options if key not in takes)
        if unknown:
            raise ConfigError(
                f"{spec.origin}: unknown option{'s' if len(unknown) > 1 else ''}"
                f" {', '.join(repr(k) for k in unknown)} for {what} '{spec.driver}'"
                f" (it takes: {', '.join(takes) or 'none'})"
            )
    missing = [
        name
        for name in takes
        if params[name].default is inspect.Parameter.empty and name not in spec.options
    ]
    if missing:
        given = ", ".join(sorted(spec.options)) or "none"
        raise ConfigError(
            f"{spec.origin}: {what} '{spec.driver}' needs option"
            f"{'s' if len(missing) > 1 else ''} {', '.join(repr(k) for k in missing)}"
            f" (given: {given})"
        )
