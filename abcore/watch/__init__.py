"""The watcher: ``runner`` (one pass, the loop, stopping rules), ``webhooks`` (settings, payload, delivery),
``snapshots`` (stored snapshots and alerts, read back) and ``report`` (what a pass did)."""
