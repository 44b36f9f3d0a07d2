"""One raw partition's step: dedup -> correlate -> aggregate -> emit (see engine.py)."""

from processor.engine.engine import Engine
from processor.engine.outputs import Outputs
from processor.engine.records import TICK_HEADER, TICK_KEY, Record, is_tick, tick_value
from processor.engine.settings import Settings, settings_from
from processor.state.transaction import FlushPolicy

__all__ = ["TICK_HEADER", "TICK_KEY", "Engine", "FlushPolicy", "Outputs", "Record", "Settings", "is_tick",
           "settings_from", "tick_value"]
