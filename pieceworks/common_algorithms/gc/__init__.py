"""Who works on a store, and what is no longer needed in it.

`leases` (markers with owners: leases, collector locks, run journals in
the store), `journal` (run journals on this host, for runs with no store),
`collection` (garbage collection: unreferenced chunks, never racing a
backup), `retention` (the policy of ``pieceworks forget``) and `recover`
(what dead runs left behind, and only that).

Imports go downward only: these modules use `format` and `protocols`, never
`operations`.
"""
