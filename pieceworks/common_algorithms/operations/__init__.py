"""The operations: what a manager asks for, how it is planned, and the flows.

`requests` (what is asked), `plan` and `planning` (strategies in order, with
reasons), `fallback` (TaskFlow's retry choosing the next strategy),
`registration` (flows in the registry), `reverts`, `targets` (nothing is
replaced by surprise), and one module per operation: `backup` (with its
tasks in `backup_tasks`), `restore`, `verify`, `delete`, `replicate`,
`copy`, `against_source`.

The public names are re-exported, lazily, from `pieceworks.common_algorithms`.
"""
