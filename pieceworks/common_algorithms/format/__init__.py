"""The store's format and the data path: manifests, chunks, streams.

`manifest` is the one object that makes a set of chunks a backup (its JSON
form is documented in ``docs/format.md``); `chunk_pipeline` backs up,
restores and verifies a volume chunk by chunk; `stream_copy` copies a
volume from one backend's stream-out into another's stream-in.

These modules import only `pieceworks.protocols` and `pieceworks.failpoints`
(checked by import-linter), so every operation and every driver can reuse
them without pulling in TaskFlow: the import contract puts this package below
`pieceworks.drivers`, and the remote target's push is `chunk_pipeline`'s
`backup_chunks` (`pieceworks.drivers.remote.transfer.push_volume`).
"""
