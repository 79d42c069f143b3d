"""The watcher: ``rules`` (pure: what a pass observes and which stopping rules fire), ``runner`` (one pass,
the loop, snapshots and alerts written, actions applied), ``webhooks`` (settings, payload, delivery),
``snapshots`` (stored snapshots and alerts, read back) and ``report`` (what a pass did)."""
