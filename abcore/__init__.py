"""abcore: a self-hosted experimentation platform (assignment, tracking, statistics, dashboard)."""

__version__ = "0.1.0"
