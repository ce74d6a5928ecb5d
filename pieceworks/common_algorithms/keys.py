"""Passphrases of an encrypted store: the master key, wrapped, kept in the store.

An encrypted store holds one random 32-byte **master key**, from which the
object and chunk-id keys are derived (`pieceworks.protocols.encryption`). The
master key is never stored in clear: each passphrase that opens the store has
a **key file** ``keys/<key-id>.json`` holding the master key wrapped with
AES-256-GCM under a key derived from that passphrase with scrypt (RFC 7914,
memory-hard), with the scrypt parameters and salt recorded beside it. Several
key files wrap the same master key, so passphrases can be added, removed and
changed without re-encrypting anything, as restic's ``key`` command does; the
last key file cannot be removed.

A key file (JSON, canonical, in clear: it holds nothing that opens the store
without its passphrase)::

    {"format": "pieceworks.key", "version": 1, "key_id": "<16 hex>",
     "created": 1795000000.0, "host": "backup-1",
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<base64, 16 bytes>"},
     "cipher": "aes-256-gcm", "nonce": "<base64, 12 bytes>",
     "wrapped": "<base64: AES-256-GCM(kek, nonce, master key, aad=b'pieceworks.key:' + key_id)>"}

scrypt and AES-GCM come from the ``cryptography`` package. Errors:
`WrongPassword` (a `ConfigError`: exit 2, nothing touched) when no key file
opens with the passphrase; `NotEncrypted` when the store has no key file;
`KeyRefused` for an operation that would lose access (removing the last key)
or initialise a store that already holds backups.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from pieceworks.common_algorithms.encryption_lock import key_init_marked, obstacles_to_init
from pieceworks.failpoints import failpoint
from pieceworks.protocols import ConfigError, IObjectStore, NotFound, ObjectNotFound
from pieceworks.protocols.encrypted_store import KEYS_PREFIX
from pieceworks.protocols.encryption import MASTER_KEY_BYTES, StoreKeys
from pieceworks.protocols.errors import CorruptionError
from pieceworks.protocols.os_errors import os_reason

__all__ = [
    "DEFAULT_KDF",
    "KEYS_PREFIX",
    "SECRET_FILE_LIMIT",
    "KdfParams",
    "KeyInfo",
    "KeyNotFound",
    "KeyRefused",
    "NotEncrypted",
    "WrongPassword",
    "add_key",
    "change_password",
    "init_keys",
    "is_encrypted",
    "list_keys",
    "passphrase_from_file",
    "remove_key",
    "scan_keys",
    "unlock",
]

FORMAT: Final = "pieceworks.key"
VERSION: Final = 1
SALT_BYTES: Final = 16
_AAD_PREFIX: Final = b"pieceworks.key:"
#: Upper bounds of the scrypt parameters a key file may ask for (n=2^20 with r=16 needs 2 GiB):
#: a damaged or hostile key file must not make a command exhaust memory.
_KDF_LIMITS: Final = {"n": 1 << 20, "r": 16, "p": 16}


class WrongPassword(ConfigError):
    """No key file of the store opens with the passphrase given."""

    reference = "wrong-password"
    hint = "give the store's passphrase: --password-file, $PIECEWORKS_PASSWORD or a prompt"


class NotEncrypted(ConfigError):
    """The store has no key file: it is a plain store."""

    hint = "`pieceworks key init` encrypts a plain store that holds no backup yet"


class KeyNotFound(NotFound):
    """No key file with the id given."""


class KeyRefused(ConfigError):
    """A key operation that would lose access or mix plain and encrypted data."""

    hint = "`pieceworks key list` shows the store's keys (docs/cli.md, encryption)"


@dataclass(frozen=True)
class KdfParams:
    """scrypt's cost parameters: `n` (CPU/memory cost, a power of two), `r`, `p`.

    The default (n=2^15, r=8, p=1) needs 32 MiB and about 0.1 s here;
    OWASP's minimum for scrypt is n=2^17 with r=8 at p=1 for password
    storage, but a backup key is opened by every command, so we follow
    restic's choice of a cost measured in tenths of a second.
    """

    n: int = 1 << 15
    r: int = 8
    p: int = 1

    def derive(self, password: str, salt: bytes) -> bytes:
        """The 32-byte key-encryption key for `password` and `salt`."""
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # noqa: PLC0415

        return Scrypt(salt=salt, length=32, n=self.n, r=self.r, p=self.p).derive(password.encode())


DEFAULT_KDF: Final = KdfParams()


@dataclass(frozen=True)
class KeyInfo:
    """What `list_keys` shows of one key file (nothing secret)."""

    key_id: str
    created: float
    host: str
    kdf: str

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "created": self.created, "host": self.host, "kdf": self.kdf}


def is_encrypted(store: IObjectStore) -> bool:
    """Whether `store` has at least one key file."""
    return next(_key_names(store), None) is not None


def init_keys(store: IObjectStore, password: str, kdf: KdfParams = DEFAULT_KDF) -> str:
    """Make `store` an encrypted store opened by `password`; return the key id.

    Refused (`KeyRefused`, nothing written) when the store already has a
    key file or holds any object at all: a store is encrypted from its
    first backup on (copy the backups of a plain store into a new encrypted
    one with ``pieceworks copy``). A backup or another ``key init`` running
    at the same time is found through the markers of
    `pieceworks.common_algorithms.encryption_lock`: either this init steps
    back, or the backup stops before writing data; never a store that
    mixes plain and sealed objects.
    """
    _check_password(password)
    if is_encrypted(store):
        raise KeyRefused("the store is already encrypted: use `key add` for another passphrase")
    with key_init_marked(store) as marker:
        found = obstacles_to_init(store, marker)
        if found:
            raise KeyRefused(found.message())
        key_id = _write_key(store, os.urandom(MASTER_KEY_BYTES), password, kdf)
        for stale in found.stale_inits:  # markers of killed inits: their owners are dead
            store.delete(stale)
    # Two inits at once both found the store empty and each wrote a key with its
    # own master key: backups sealed by one could not be opened through the
    # other. The markers above prevent it on a linearizable store; should a store
    # list late, only a run that finds its key alone keeps it (at most one can).
    others = [name for name in _key_names(store) if name != _key_name(key_id)]
    if others:
        store.delete(_key_name(key_id))
        raise KeyRefused(
            "another `key init` ran at the same time: this one's key was removed again"
            " (one store, one master key); `pieceworks key list` shows the store's key"
        )
    return key_id


SECRET_FILE_LIMIT = 64 * 1024
"""The most bytes a passphrase file may hold (64 KiB)."""


def passphrase_from_file(path: str, what: str = "passphrase") -> str:
    """The passphrase file `path` holds (its trailing newline removed).

    Raise `ConfigError` naming the file and why in words (never its content)
    if it cannot be read, is larger than `SECRET_FILE_LIMIT` bytes (only that
    much and one byte more is read: ``/dev/zero`` or a disk image named by
    mistake is refused at once), is not UTF-8 text or is empty.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(SECRET_FILE_LIMIT + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {os_reason(exc, path)}") from None
    if len(data) > SECRET_FILE_LIMIT:
        raise ConfigError(
            f"the {what} file {path} is larger than {SECRET_FILE_LIMIT // 1024} KiB:"
            f" not a {what} file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read the {what} file {path}: it is not UTF-8 text") from None
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError(f"the {what} file {path} is empty")
    return password


def unlock(store: IObjectStore, password: str) -> StoreKeys:
    """The store's keys, opened with `password`.

    Raise `NotEncrypted` for a store without key files and `WrongPassword`
    when none opens with `password`.
    """
    keys = _unlock(store, password)
    return StoreKeys.from_master(keys[1])


def add_key(
    store: IObjectStore, password: str, new_password: str, kdf: KdfParams = DEFAULT_KDF
) -> str:
    """Add a key file for `new_password`, opening the store with `password`; return its id."""
    _check_password(new_password)
    _key_id, master = _unlock(store, password)
    return _write_key(store, master, new_password, kdf)


def change_password(
    store: IObjectStore, password: str, new_password: str, kdf: KdfParams = DEFAULT_KDF
) -> str:
    """Replace the key file `password` opens by one for `new_password`; return the new id.

    The new key file is written (durably) before the old one is removed, so
    a crash in between leaves both passphrases working, never neither. A
    ``key remove`` of the new key meanwhile (its id is listed as soon as it
    is written) would leave no key at all: as two removals do, whichever
    finds no key left after its delete puts its key back, and here that is
    `KeyRefused` with the old key kept.
    """
    _check_password(new_password)
    old_id, master = _unlock(store, password)
    new_id = _write_key(store, master, new_password, kdf)
    name = _key_name(old_id)
    try:
        body = store.get(name)
    except ObjectNotFound:
        return new_id  # removed meanwhile by another run; the new key opens the store
    failpoint("key.before-remove")
    store.delete(name)
    if next(_key_names(store), None) is None:
        store.put(name, body)
        raise KeyRefused(
            f"the passphrase was not changed: the new key {new_id} was removed (`key remove`)"
            f" while this command replaced key {old_id}, which would have left the store"
            f" without a key (every backup lost); key {old_id} is back, the old passphrase"
            " still opens the store"
        )
    return new_id


def remove_key(store: IObjectStore, password: str, key_id: str) -> None:
    """Remove key file `key_id`, opening the store with `password` first.

    Refused (`KeyRefused`) when it is the store's last key file; a key file
    that does not exist raises `KeyNotFound`.
    """
    _unlock(store, password)
    infos, damaged = scan_keys(store)
    intact = [info.key_id for info in infos]
    ids = intact + [key for key, _exc in damaged]
    if key_id not in ids:
        raise KeyNotFound(f"no key {key_id!r} in this store (keys: {', '.join(ids)})")
    if intact == [key_id]:  # a damaged key file opens nothing: it does not count
        raise KeyRefused(
            f"key {key_id} is the store's last key: removing it would lose every backup"
        )
    # Two removals at once (of two keys of a two-key store) both pass the check
    # above; whichever finds no key left after its delete puts its key back, so
    # the last one to look always finds one (all deletes happened before it looked).
    name = _key_name(key_id)
    try:
        body = store.get(name)
    except ObjectNotFound:
        return  # removed meanwhile by another run: done
    failpoint("key.before-remove")
    store.delete(name)
    if next(_key_names(store), None) is None:
        store.put(name, body)
        raise KeyRefused(
            f"key {key_id} was not removed: another key removal ran at the same time and"
            " this one would have left the store without a key (every backup lost); it is"
            " back, and `pieceworks key list` shows the keys that remain"
        )


def list_keys(store: IObjectStore) -> list[KeyInfo]:
    """Every key file of the store, oldest first (no passphrase needed).

    A damaged key file raises its `CorruptionError`; `scan_keys` lists the
    intact ones beside the damaged.
    """
    infos, damaged = scan_keys(store)
    if damaged:
        raise damaged[0][1]
    return infos


def scan_keys(store: IObjectStore) -> tuple[list[KeyInfo], list[tuple[str, CorruptionError]]]:
    """(intact key files oldest first, (key id, error) of each damaged one).

    `NotEncrypted` if the store has no key file at all. A damaged key file
    does not hide the others: another passphrase still opens the store.
    """
    infos, damaged = [], []
    names = list(_key_names(store))
    for name in names:
        try:
            doc = _read_key(store, name)
        except ObjectNotFound:  # removed since it was listed
            continue
        except CorruptionError as exc:
            damaged.append((_key_id_of(name), exc))
            continue
        kdf = doc["kdf"]
        infos.append(
            KeyInfo(
                doc["key_id"],
                float(doc["created"]),
                str(doc.get("host", "")),
                f"{kdf['name']} n={kdf['n']} r={kdf['r']} p={kdf['p']}",
            )
        )
    if not infos and not damaged:
        raise NotEncrypted("the store is not encrypted (it has no key): see `pieceworks key init`")
    return sorted(infos, key=lambda info: (info.created, info.key_id)), damaged


def _key_id_of(name: str) -> str:
    return name.removeprefix(KEYS_PREFIX).removesuffix(".json")


# -- key files -------------------------------------------------------------------------


def _check_password(password: str) -> None:
    if not password:
        raise ConfigError("an empty passphrase is refused")


def _key_name(key_id: str) -> str:
    return f"{KEYS_PREFIX}{key_id}.json"


def _key_names(store: IObjectStore) -> Iterator[str]:
    return (name for name in store.list(KEYS_PREFIX) if name.endswith(".json"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str, name: str) -> bytes:
    if not isinstance(text, str):
        raise CorruptionError(f"key file {name}: {what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise CorruptionError(f"key file {name}: {what} is not valid base64") from exc


def _write_key(store: IObjectStore, master: bytes, password: str, kdf: KdfParams) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    key_id = os.urandom(8).hex()
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(12)
    kek = kdf.derive(password, salt)
    wrapped = AESGCM(kek).encrypt(nonce, master, _AAD_PREFIX + key_id.encode())
    failpoint("key.before-write")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "key_id": key_id,
        "created": time.time(),
        "host": socket.gethostname(),
        "kdf": {"name": "scrypt", "n": kdf.n, "r": kdf.r, "p": kdf.p, "salt": _b64(salt)},
        "cipher": "aes-256-gcm",
        "nonce": _b64(nonce),
        "wrapped": _b64(wrapped),
    }
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    store.put(_key_name(key_id), body)
    return key_id


def _read_key(store: IObjectStore, name: str) -> dict[str, Any]:
    try:
        doc = json.loads(store.get(name))
    except ObjectNotFound:
        raise
    except (ValueError, RecursionError) as exc:
        raise CorruptionError(f"key file {name} is not valid JSON") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CorruptionError(f"key file {name} is not a pieceworks key file")
    if doc.get("version") != VERSION:
        raise CorruptionError(f"key file {name}: unknown version {doc.get('version')!r}")
    kdf = doc.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise CorruptionError(f"key file {name}: unknown key derivation {kdf!r}")
    for field_name, limit in _KDF_LIMITS.items():
        value = kdf.get(field_name)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise CorruptionError(f"key file {name}: scrypt parameter {field_name} is invalid")
    if kdf["n"] & (kdf["n"] - 1) or kdf["n"] < 2:
        raise CorruptionError(f"key file {name}: scrypt parameter n is not a power of two")
    if not isinstance(doc.get("key_id"), str) or not isinstance(doc.get("created"), int | float):
        raise CorruptionError(f"key file {name}: key_id or created is missing")
    return doc


def _unlock(store: IObjectStore, password: str) -> tuple[str, bytes]:
    """(key id, master key) of the first key file `password` opens."""
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    names = list(_key_names(store))
    if not names:
        raise NotEncrypted("the store is not encrypted (it has no key): see `pieceworks key init`")
    damaged: list[CorruptionError] = []
    for name in names:
        try:
            doc = _read_key(store, name)
        except ObjectNotFound:  # removed since it was listed (a concurrent `key remove`)
            continue
        except CorruptionError as exc:  # another key file may still open the store
            damaged.append(exc)
            continue
        kdf = doc["kdf"]
        params = KdfParams(kdf["n"], kdf["r"], kdf["p"])
        kek = params.derive(password, _unb64(kdf.get("salt"), "salt", name))
        nonce = _unb64(doc.get("nonce"), "nonce", name)
        wrapped = _unb64(doc.get("wrapped"), "wrapped key", name)
        try:
            master = AESGCM(kek).decrypt(nonce, wrapped, _AAD_PREFIX + doc["key_id"].encode())
        except InvalidTag:
            continue
        if len(master) != MASTER_KEY_BYTES:
            raise CorruptionError(f"key file {name}: the wrapped key has a wrong length")
        return str(doc["key_id"]), master
    if damaged and len(damaged) == len(names):
        raise damaged[0]
    intact, note = "", ""
    if damaged:
        intact, note = " intact", f" ({len(damaged)} more damaged: see `pieceworks key list`)"
    raise WrongPassword(
        f"wrong passphrase: none of the store's {len(names) - len(damaged)}{intact} key(s)"
        f" opens with it{note}"
    )
