"""The store's format and the data path: manifests, chunks, streams.

`manifest` is the one object that makes a set of chunks a backup (its JSON
form is documented in ``docs/format.md``); `chunk_pipeline` backs up,
restores and verifies a volume chunk by chunk; `stream_copy` copies a
volume from one backend's stream-out into another's stream-in.

These modules import only `pieceworks.protocols` and `pieceworks.failpoints`
(checked by import-linter), so every operation, and one day a driver, can
reuse them without pulling in TaskFlow.
"""
