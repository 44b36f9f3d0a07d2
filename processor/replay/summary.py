"""What a replay did, counted once and worded once: the progress line and the final summary say the same."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReplayStats:
    total: int = 0              # records between the start and end offsets
    read: int = 0
    outside: int = 0            # events whose own timestamp is outside the range
    invalid: int = 0            # unusable records (the live pipeline dead-lettered them)
    events: int = 0             # events the engine took (duplicates excluded)
    duplicates: int = 0
    late: int = 0
    windows_sent: int = 0       # (group, window) pairs sent to Datadog (or the dry-run file)
    windows_held: int = 0       # ... written to the held file instead (older than 1 hour)
    chains_sent: int = 0        # chains counted in the windows sent
    chains_held: int = 0        # ... in the windows held back
    chains_open: int = 0        # still open at the end of the range: the live pipeline counts them
    points_sent: int = 0
    points_held: int = 0
    points_dropped: int = 0     # more than 10 minutes in the future
    points_refused: int = 0     # refused by Datadog for good (dead-lettered)
    logs_sent: int = 0
    logs_dropped: int = 0       # over 18 hours old
    logs_refused: int = 0
    held_requests: int = 0

    def progress(self, rate: float) -> str:
        return (f"replay: {self.read}/{self.total} records ({rate:.0f}/s), {self.windows_sent} windows sent, "
                f"{self.windows_held} held, {self.chains_sent} chains sent")

    def summary(self, held_file: str, historical: bool, dry_run_file: str | None) -> str:
        """dry_run_file: where the requests went instead of Datadog (None: they went to Datadog)."""
        lines = [
            f"replayed {self.events} events ({self.duplicates} duplicates counted once, {self.late} too late for "
            f"their window, {self.outside} outside the range, {self.invalid} unusable) from {self.read} records",
            f"windows sent: {self.windows_sent}" + (f" (and {self.windows_held} held back)" if self.windows_held
                                                    else "")
            + f"; metric points sent: {self.points_sent}"
            + (f" (dry run: written to {dry_run_file})" if dry_run_file else "")
            + f", dropped: {self.points_dropped}; logs sent: {self.logs_sent}, dropped (over 18 h old): "
              f"{self.logs_dropped}",
            f"chains sent: {self.chains_sent}" + (f" (and {self.chains_held} held back)" if self.chains_held else "")
            + f"; still open at --until, left to the live pipeline: {self.chains_open}",
        ]
        if self.points_refused or self.logs_refused:
            lines.append(f"refused by Datadog (in the dead-letter topic): {self.points_refused} metric points, "
                         f"{self.logs_refused} logs")
        if self.points_held:
            lines.append(f"held back {self.points_held} metric points older than 1 hour in {held_file} "
                         f"({self.held_requests} series requests, one per line); enable Historical Metrics "
                         "Ingestion in Datadog and replay with --historical to send them")
        elif not historical:
            lines.append("held back 0 metric points (none older than 1 hour)")
        return "\n".join(lines)
