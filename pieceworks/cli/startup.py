"""The cyclic garbage collector during a command's start-up.

A command's start-up is mostly imports (TaskFlow and its dependencies:
networkx, oslo.utils, futurist...): a few hundred thousand objects that live
as long as the process and are never garbage. Even at `THRESHOLD` the
collector scans each of them at least once as it ages, about 25 ms of CPU
per flow command (measured on the 1 MiB backup of ``bench/cli_vs_peers.py``:
0.388 against 0.363 CPU seconds). So `begin` turns the collector off when
a command starts and `done` turns it back on once the imports are over,
first moving every object alive into the permanent generation
(``gc.freeze``, as CPython's documentation suggests for a pre-forked
server's start-up), so that later collections skip them.

When start-up is over:

* a command that runs a common algorithm's flow (``runs_flow``: backup,
  restore, verify, replicate, delete, demo) imports TaskFlow's engine from
  inside its run function; `pieceworks.cli.context.Context.engine_options`
  loads the engine (`pieceworks.common_algorithms.runner.load_engine`)
  and calls `done`, just before the flow runs;
* any other command: `pieceworks.cli.main` calls `done` before it runs, so
  long-running commands (conductor, worker, target) always collect;
* `end`, when the command returns or fails, in any case: the collector is
  on again as it was found and the permanent generation it filled is
  handed back to the collector (``gc.unfreeze``), so that a process calling
  `pieceworks.cli.main.main` many times (the tests) keeps nothing for good.

With the collector off, memory is still freed by reference counting; only
reference cycles wait, and start-up makes few.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLD", "begin", "done", "end"]

#: The collector's first threshold while a command runs: the data path
#: creates few cycles, and the default (700) costs dozens of collections
#: over the objects a flow's engine makes. (mypy does the same for the same
#: reason.)
THRESHOLD = 50_000

_state = {"paused": False, "froze": False}


def begin() -> None:
    """Start-up begins: raise the threshold, and turn the collector off if it is on."""
    first, *older = gc.get_threshold()
    gc.set_threshold(max(THRESHOLD, first), *older)
    _state["paused"] = gc.isenabled()
    _state["froze"] = False
    if _state["paused"]:
        gc.disable()


def done() -> None:
    """Start-up is over: freeze what is alive and turn the collector back on (once)."""
    if not _state["paused"]:
        return
    _state["paused"] = False
    if gc.get_freeze_count() == 0:  # never unfreeze what someone else froze
        gc.freeze()
        _state["froze"] = True
    gc.enable()


def end() -> None:
    """The command is over: the collector as `begin` found it, nothing kept frozen by us."""
    done()
    if _state["froze"]:
        _state["froze"] = False
        gc.unfreeze()
