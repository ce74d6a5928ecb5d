"""Published capabilities never change: new methods go into new interfaces."""

from __future__ import annotations

from pieceworks.protocols import CAPABILITIES
from pieceworks.protocols._zope import method_parameters

#: The published contract. Changing a line here breaks every driver that
#: implements it: add an interface extending the capability instead.
PUBLISHED = {
    "snapshot": {
        "create_snapshot": ("volume", "snapshot_id"),
        "delete_snapshot": ("snapshot",),
    },
    "stream-out": {"open_read": ("source",)},
    "stream-in": {"open_write": ("target", "size")},
    "push-to-object-store": {"push_to_store": ("source", "store", "chunk_size", "codec")},
    "pull-from-object-store": {"pull_from_store": ("target", "size", "store", "chunks")},
    "compress": {"compression_codecs": ()},
    "allocated-extents": {"allocated_extents": ("source",)},
    "changed-blocks": {"change_token": ("source",), "changed_extents": ("source", "since")},
    "object-store": {
        "put": ("key", "data"),
        "get": ("key",),
        "head": ("key",),
        "delete": ("key",),
        "list": ("prefix",),
    },
    "replicate-to-peer": {
        "accepts_peer": ("peer",),
        "replicate_to": ("source", "peer", "target"),
    },
}


def test_published_capabilities_keep_their_members_and_parameters() -> None:
    """Each capability has exactly the published methods with the published parameters."""
    actual = {
        name: {m: method_parameters(iface[m]) for m in iface.names(all=True)}
        for name, iface in CAPABILITIES.items()
    }
    assert actual == PUBLISHED
