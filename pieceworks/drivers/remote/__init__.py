"""The remote driver and the remote target it drives, split by role.

This is the "backend at wire length from the manager" of the founding
discussion. The target is a process next to the volumes that owns a
directory of them (a `FileDriver` on it) and answers a small HTTP/JSON API;
for a backup the manager sends only a `StoreSpec`, and the target reads its
volume (or a snapshot of it), cuts it into chunks, hashes and compresses
each one and writes the chunk objects into the store itself, then answers
with the chunk list (a `PushedVolume`). No volume byte crosses the manager.

Read it in this order:

* `protocol` -- the API table, JSON codecs, the error <-> status map, the
  replication frames and secret masking: everything both sides share;
* `client` -- `RemoteDriver`, the manager's side (imports `protocol` only);
* `transfer` -- the target's data paths: push, pull, send, receive;
* `service` -- `TargetService`, what the target does, without HTTP;
* `http` -- routes, the request handler, heartbeat streaming;
* `server` -- `make_server`, `serve` and the command line (``main``).

`RemoteDriver` and `protocol_error` are re-exported here, so
``pieceworks.drivers.remote:RemoteDriver`` names the driver.
"""

from pieceworks.drivers.remote.client import DEFAULT_TIMEOUT, RemoteDriver
from pieceworks.drivers.remote.protocol import protocol_error

__all__ = ["DEFAULT_TIMEOUT", "RemoteDriver", "protocol_error"]
