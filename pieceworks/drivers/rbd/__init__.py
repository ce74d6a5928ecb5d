"""The Ceph RBD driver (entry point ``rbd``): volumes are RBD images of one pool.

Everything goes through librbd (Debian's ``python3-rbd`` bindings), never
the ``rbd`` command:

=====================  ===============================================================
capability             how
=====================  ===============================================================
snapshot               RBD snapshots (instant, point in time), created and removed
stream-out             ``Image.read`` of the image or of one of its snapshots
stream-in              a new hidden image, written only where the data is not zero
                       (thin), moved into place on commit; never replaces an image
                       that a client has open or that has clones
allocated-extents      RBD's diff of the image against nothing
changed-blocks         the token names a snapshot the driver keeps as the base of
                       the next incremental; the changed ranges are RBD's diff from
                       it (over-reported at object granularity for objects new since
                       the base: safe); old bases are removed; a missing base raises
                       `ChangeTrackingLost`
replicate-to-peer      to another rbd backend (same or another pool or cluster), as
                       export-diff/import-diff: the first copy whole, later ones only
                       what changed since the last common snapshot, kept on both sides
=====================  ===============================================================

Modules: `driver` (the class), `_cluster` (options, connection, errors),
`_images` (image helpers), `_io` (reader, writer), `_tracking` (kept
snapshots), `_replicate` (native replication), `_inflight` (the record of
replications under way, undone after a kill). Configuration and a test
cluster: docs/drivers.md and ``scripts/ceph/run_ceph.py``.
"""

from pieceworks.drivers.rbd.driver import RbdDriver

__all__ = ["RbdDriver"]
