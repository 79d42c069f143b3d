"""The summary of one watcher pass, filled by the pass and by the webhook delivery."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PassReport"]


@dataclass
class PassReport:
    """What one pass did (counts) and the errors it logged; ``ok`` when there were none."""

    experiments: int = 0
    snapshots: int = 0
    alerts: int = 0
    actions: int = 0
    delivered: int = 0
    undelivered: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        text = (f"watched {self.experiments} running experiment(s): {self.snapshots} snapshot(s), "
                f"{self.alerts} new alert(s), {self.actions} action(s), {self.delivered} webhook(s) delivered, "
                f"{self.undelivered} pending")
        return text + (f"; {len(self.errors)} error(s): " + " | ".join(self.errors) if self.errors else "")
