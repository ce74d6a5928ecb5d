"""pieceworks: capability-driven storage backup on OpenStack TaskFlow."""

__version__ = "0.1.0"
