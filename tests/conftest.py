"""Session-wide fixtures: the real Swift (and S3 API) server and the real Ceph cluster,
each started on first use."""

from tests.fixtures.ceph_cluster import ceph_cluster
from tests.fixtures.swift_server import swift_server

__all__ = ["ceph_cluster", "swift_server"]
