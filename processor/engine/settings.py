"""The engine's settings, and the horizons derived from them (see docs/design.md, "Retention")."""

from __future__ import annotations

from dataclasses import dataclass

from common.config import Config


@dataclass(slots=True)
class Settings:
    window_ms: int
    lateness_ms: int
    quiet_ms: int
    timeout_ms: int
    logs: frozenset[str]
    replay: bool = False  # clock = highest event time seen, instead of the last tick

    @property
    def closed_window_retention_ms(self) -> int:
        """How long a closed window's record outlives its close: one window, so /els/flows/ and the status page
        can show the last closed window. (Exactness needs only that the close is committed first: see
        processor/engine/clock.py.)"""
        return self.window_ms

    @property
    def closed_chain_retention_ms(self) -> int:
        """How long a closed chain's marker outlives its close: the lateness, after which a duplicate of one
        of its events would be too late for its window anyway."""
        return self.lateness_ms


def settings_from(cfg: Config, replay: bool = False) -> Settings:
    return Settings(window_ms=cfg.els_window_seconds * 1000, lateness_ms=cfg.els_lateness_seconds * 1000,
                    quiet_ms=cfg.els_chain_quiet_seconds * 1000, timeout_ms=cfg.els_chain_timeout_seconds * 1000,
                    logs=cfg.logs_enabled, replay=replay)
