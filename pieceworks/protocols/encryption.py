"""The encrypted form of a store's objects: sealed objects and keyed chunk ids.

An encrypted store holds the same objects as a plain one (`docs/format.md`),
each **sealed**: encrypted and authenticated with AES-256-GCM under the
store's object key, with a fresh random 96-bit nonce per object and the
object's own name as associated data, so that an object moved to another
name, a flipped bit or a truncation is refused. A sealed object is::

    b"PWE" + version (1 byte, 1) + nonce (12 bytes) + ciphertext + tag (16 bytes)

Chunk objects of an encrypted store are named by a **keyed** id instead of
the plain sha256: the hex HMAC-SHA256 of the chunk's plain bytes under the
store's chunk-id key. Equal content still gets one object (deduplication
works), but someone who can read the bucket and holds candidate data cannot
tell whether the store contains it.

Both keys come from the store's 32-byte master key by HKDF-SHA256 (RFC 5869,
no salt) with the info strings ``pieceworks object key v1`` and
``pieceworks chunk-id key v1``. How the master key is kept in the store,
wrapped under passphrases, is `pieceworks.common_algorithms.keys`.

This module is part of the format (like `pieceworks.protocols.chunks`): a
backend that writes into an encrypted store itself must write exactly these
objects. The primitives come from the ``cryptography`` package (OpenSSL's
AES-GCM and HKDF) and the standard library's HMAC; nothing is written here
that those libraries do.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from pieceworks.protocols.errors import CorruptionError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "MASTER_KEY_BYTES",
    "SEALED_OVERHEAD",
    "StoreKeys",
    "is_sealed",
    "seal",
    "seal_into",
    "unseal",
]

MAGIC: Final = b"PWE"
VERSION: Final = 1
HEADER: Final = MAGIC + bytes((VERSION,))
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
#: Bytes a sealed object has beyond its plain content.
SEALED_OVERHEAD: Final = len(HEADER) + NONCE_BYTES + TAG_BYTES
MASTER_KEY_BYTES: Final = 32
OBJECT_KEY_INFO: Final = b"pieceworks object key v1"
CHUNK_ID_KEY_INFO: Final = b"pieceworks chunk-id key v1"


def _hkdf(master: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 (startup time)
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: PLC0415

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


@dataclass(frozen=True, repr=False)
class StoreKeys:
    """The two keys of an encrypted store, derived from its master key.

    Never printed: the repr names no key material.
    """

    object_key: bytes
    chunk_id_key: bytes
    aead: AESGCM = field(compare=False)

    def __repr__(self) -> str:
        return "StoreKeys(<secret>)"

    @classmethod
    def from_master(cls, master: bytes) -> StoreKeys:
        """Derive both keys from a 32-byte master key (HKDF-SHA256)."""
        if len(master) != MASTER_KEY_BYTES:
            raise ValueError(f"a master key has {MASTER_KEY_BYTES} bytes, not {len(master)}")
        return cls.from_keys(_hkdf(master, OBJECT_KEY_INFO), _hkdf(master, CHUNK_ID_KEY_INFO))

    @classmethod
    def from_keys(cls, object_key: bytes, chunk_id_key: bytes) -> StoreKeys:
        """The keys themselves, as handed to a backend that offloads (sealed-offload)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        return cls(object_key, chunk_id_key, AESGCM(object_key))

    def chunk_id(self, data: bytes | bytearray | memoryview) -> str:
        """The keyed id of a chunk: hex HMAC-SHA256 of its plain bytes (64 hex digits)."""
        return hmac.new(self.chunk_id_key, data, hashlib.sha256).hexdigest()


def is_sealed(stored: bytes | bytearray | memoryview) -> bool:
    """Whether `stored` starts with the sealed-object header."""
    return bytes(stored[: len(HEADER)]) == HEADER


def seal(keys: StoreKeys, name: str, plain: bytes | bytearray | memoryview) -> bytes:
    """The sealed form of object `name` holding `plain` (a fresh nonce each call)."""
    nonce = os.urandom(NONCE_BYTES)
    return HEADER + nonce + keys.aead.encrypt(nonce, plain, HEADER + name.encode())


def seal_into(
    keys: StoreKeys, name: str, plain: bytes | bytearray | memoryview, out: bytearray
) -> memoryview:
    """`seal`, written into `out` (at least ``len(plain) + SEALED_OVERHEAD`` bytes).

    Return a view of the sealed object at the start of `out`, valid until
    `out` is written again. For writers that seal many objects: reusing one
    buffer per thread avoids a fresh multi-megabyte allocation (and its page
    faults) per object, which costs more than the encryption itself.
    """
    need = len(plain) + SEALED_OVERHEAD
    if len(out) < need:
        raise ValueError(f"seal_into needs a buffer of {need} bytes, not {len(out)}")
    view = memoryview(out)[:need]
    nonce = os.urandom(NONCE_BYTES)
    view[: len(HEADER)] = HEADER
    view[len(HEADER) : len(HEADER) + NONCE_BYTES] = nonce
    keys.aead.encrypt_into(nonce, plain, HEADER + name.encode(), view[len(HEADER) + NONCE_BYTES :])
    return view


def unseal(keys: StoreKeys, name: str, stored: bytes | bytearray | memoryview) -> bytes:
    """The plain content of sealed object `name`.

    Raise `CorruptionError` naming the object when the header is not a
    sealed object's, or when authentication fails: a flipped bit, a
    truncation, another store's key, or an object moved from another name.
    """
    from cryptography.exceptions import InvalidTag  # noqa: PLC0415

    if len(stored) < SEALED_OVERHEAD or not is_sealed(stored):
        raise CorruptionError(f"object {name}: not a sealed object of an encrypted store")
    view = memoryview(stored)
    nonce = bytes(view[len(HEADER) : len(HEADER) + NONCE_BYTES])
    try:
        return keys.aead.decrypt(nonce, view[len(HEADER) + NONCE_BYTES :], HEADER + name.encode())
    except InvalidTag:
        raise CorruptionError(
            f"object {name}: authentication failed (damaged, altered or sealed with another key)"
        ) from None
