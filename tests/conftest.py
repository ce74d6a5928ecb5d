"""Session-wide fixtures: the real Swift (and S3 API) server, started on first use."""

from tests.fixtures.swift_server import swift_server

__all__ = ["swift_server"]
