"""Compatibility shim: the remote target now lives in `pieceworks.drivers.remote`.

``python -m pieceworks.drivers.remote_target`` still runs the target (it is
`pieceworks.drivers.remote.server.main`), and the names this module used to
define are re-exported from their new modules (`protocol`, `transfer`,
`service`, `http`, `server`). New code imports from those.
"""

from __future__ import annotations

import sys

from pieceworks.drivers.remote.http import TargetServer
from pieceworks.drivers.remote.protocol import (
    API_VERSION,
    FRAME_DATA,
    FRAME_HEADER,
    HEARTBEAT_SECONDS,
    MAX_FRAME,
    PEER_TIMEOUT,
    SAFE_OPTIONS,
    Peer,
    peer_from_json,
    peer_to_json,
    protocol_error,
    pushed_from_json,
    pushed_to_json,
    read_answer,
    redact,
    secret_values,
    spec_from_json,
    spec_to_json,
    wire_error,
)
from pieceworks.drivers.remote.server import main, make_server, serve
from pieceworks.drivers.remote.service import TargetService
from pieceworks.drivers.remote.transfer import (
    Job,
    Received,
    RequestBody,
    pull_volume,
    push_volume,
    receive_volume,
    send_volume,
)
from pieceworks.protocols import OperationCancelled
from pieceworks.protocols.values import chunks_from_json, chunks_to_json

__all__ = [
    "API_VERSION",
    "FRAME_DATA",
    "FRAME_HEADER",
    "HEARTBEAT_SECONDS",
    "MAX_FRAME",
    "PEER_TIMEOUT",
    "SAFE_OPTIONS",
    "Job",
    "OperationCancelled",
    "Peer",
    "Received",
    "RequestBody",
    "TargetServer",
    "TargetService",
    "chunks_from_json",
    "chunks_to_json",
    "main",
    "make_server",
    "peer_from_json",
    "peer_to_json",
    "protocol_error",
    "pull_volume",
    "push_volume",
    "pushed_from_json",
    "pushed_to_json",
    "read_answer",
    "receive_volume",
    "redact",
    "secret_values",
    "send_volume",
    "serve",
    "spec_from_json",
    "spec_to_json",
    "wire_error",
]

if __name__ == "__main__":
    sys.exit(main(prog="python -m pieceworks.drivers.remote_target"))
