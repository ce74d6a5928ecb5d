"""What every object store's tests check the same way (the POSIX store and the remote ones).

`KEYS` must list in plain string order: ``-`` and ``.`` sort before ``/``,
so a store that walks a directory tree (or a service that sorts by path
parts) gets the order wrong unless it takes care; the long ``chunks/`` keys
are shaped like real chunk keys.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from pieceworks.protocols import ObjectNotFound, ObjectStore

KEYS = [
    "a-b",
    "a.c",
    "a/b",
    "a/b-c",
    "a/b.d/e",
    "a0",
    "ab/x",
    "b/c/d",
    "chunks/ab/" + "ab" * 32,
    "chunks/ac/" + "ac" * 32,
    "manifests/backup-1",
]


def check_missing_objects(store: ObjectStore, keys: Iterable[str]) -> None:
    """Next to the object ``dir/obj``, each of `keys` is missing.

    get and head raise ObjectNotFound, exists is False, delete is fine, and
    ``dir/obj`` is still there afterwards.
    """
    store.put("dir/obj", b"x")
    for key in keys:
        with pytest.raises(ObjectNotFound):
            store.get(key)
        with pytest.raises(ObjectNotFound):
            store.head(key)
        assert not store.exists(key)
        store.delete(key)
    assert store.get("dir/obj") == b"x"
