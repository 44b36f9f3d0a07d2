"""One raw partition's step: dedup -> correlate -> aggregate -> emit, for a batch of records.

Independent of Faust, so the live worker (Faust tables as the store), the replay command (a plain dict) and the
unit tests run the very same logic. The store holds two kinds of records, both stamped with `off`, the last raw
offset whose effects they contain (see docs/design.md, "Exactness under crashes"):
- chains: root execution id -> Chain.to_dict()
- windows: "<partition>|<group>|<window start ms>" -> {"bag", "applied", "closed", "dirty", "emitted_ms"}, and
  "<partition>|clock" -> {"now", "off"}. `applied` lists the raw offset ranges whose effects the window holds
  (the spans of the batches that touched it): exact even when a consumer re-delivers records out of order.
Outputs (outbox partials and logs, dead letters) are returned to the caller, which must get them acknowledged by
Kafka before it writes the new state: a state record that says "done" is never ahead of what was emitted.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import orjson

from processor.core import chains as chainlib
from processor.core.bag import Bag
from processor.core.contributions import add_chain, add_event, add_org_steps
from processor.core.log_items import chain_log, event_log, failure_log
from processor.core.model import InvalidEvent, parse_event
from processor.core.windows import month_start, window_start

log = logging.getLogger("els.processor")

TICK_KEY = b"__tick__"
TICK_HEADER = "els-kind"
CLOSED_RETENTION_MS = 120_000  # closed window markers outlive the close by this much (see docs/design.md)


@dataclass(frozen=True, slots=True)
class Record:
    """A raw-topic record as the engine needs it."""

    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int


@dataclass(slots=True)
class Settings:
    window_ms: int
    lateness_ms: int
    quiet_ms: int
    timeout_ms: int
    logs: frozenset[str]
    replay: bool = False  # clock = highest event time seen, instead of the last tick


@dataclass(slots=True)
class Outputs:
    partials: list[tuple[bytes, dict]] = field(default_factory=list)  # (outbox key, value)
    logs: list[tuple[bytes, dict]] = field(default_factory=list)
    deadletters: list[tuple[bytes, str]] = field(default_factory=list)  # (original bytes, reason)


def is_tick(rec: Record) -> bool:
    return rec.key == TICK_KEY and rec.headers.get(TICK_HEADER) == b"tick"


class Engine:
    """Applies batches of one partition's records to the store and says what to emit."""

    def __init__(self, settings: Settings, chains: MutableMapping, windows: MutableMapping):
        self.s = settings
        self.chains = chains
        self.windows = windows
        # in-memory indexes of what each partition holds, rebuilt from the store after an assignment
        self._open_chains: dict[int, set[str]] = {}
        self._closed_chains: dict[int, dict[str, tuple[int, int]]] = {}  # root -> (closed_ms, closed_off)
        self._window_keys: dict[int, set[str]] = {}
        self._last_advance: dict[int, int] = {}
        # decoded bags of the window records this engine wrote last: (the dict written, its Bag)
        self._bags: dict[str, tuple[dict, Bag]] = {}

    # -- indexes ------------------------------------------------------------------------------------------
    def forget_partition(self, p: int) -> None:
        """Drop the indexes of a partition (revoked, or restored anew): they are rebuilt from the store."""
        self._open_chains.pop(p, None)
        self._closed_chains.pop(p, None)
        self._window_keys.pop(p, None)
        prefix = f"{p}|"
        for key in [k for k in self._bags if k.startswith(prefix)]:
            del self._bags[key]

    def open_chains_of(self, p) -> set[str] | None:
        """The open chains a partition's ticks consider for closing (None: not indexed since the last assignment)."""
        return self._open_chains.get(p)

    def _index(self, p: int) -> tuple[set[str], set[str]]:
        if p not in self._open_chains:
            mine = [(root, chainlib.Chain.from_dict(d)) for root, d in list(self.chains.items()) if d.get("p") == p]
            self._open_chains[p] = {root for root, ch in mine if not ch.closed}
            self._closed_chains[p] = {root: (ch.closed_ms, ch.closed_off) for root, ch in mine if ch.closed}
            prefix = f"{p}|"
            self._window_keys[p] = {k for k in list(self.windows.keys())
                                    if k.startswith(prefix) and not k.endswith("|clock")}
        return self._open_chains[p], self._window_keys[p]

    # -- the step -----------------------------------------------------------------------------------------
    def step(self, p: int, records: list[Record]) -> tuple[Outputs, dict, dict]:
        """Process one partition's batch; return outputs and the chain/window records to write (None = delete)."""
        s = self.s
        out = Outputs()
        open_chains, window_keys = self._index(p)
        chain_cache: dict[str, chainlib.Chain] = {}
        win_cache: dict[str, dict] = {}
        deleted_chains: set[str] = set()
        changed_chains: set[str] = set()  # only these are written back (ticks read every open chain)
        clock_key = f"{p}|clock"
        batch_lo = min(r.offset for r in records) if records else 0
        batch_hi = max(r.offset for r in records) if records else 0
        clock = dict(self.windows.get(clock_key) or {"now": 0, "off": -1})

        def window(group: str, ws: int) -> tuple[str, dict]:
            key = f"{p}|{group}|{ws}"
            rec = win_cache.get(key)
            if rec is None:
                stored = self.windows.get(key)
                rec = dict(stored) if stored else {"bag": None, "applied": [], "closed": False, "dirty": False,
                                                   "emitted_ms": 0, "group": group, "ws": ws}
                cached = self._bags.get(key)
                if cached is not None and stored is not None and cached[0] is stored:
                    rec["_bag"] = cached[1]  # the store still holds what this engine wrote: skip decoding
                else:
                    rec["_bag"] = Bag.from_dict(rec["bag"]) if rec.get("bag") else Bag()
                rec["_done"] = set()
                # the applied ranges that can matter in this batch (usually none): checked on every bump
                rec["_held"] = [r for r in rec["applied"] if r[1] >= batch_lo and r[0] <= batch_hi]
                win_cache[key] = rec
                window_keys.add(key)
            return key, rec

        def bump(group: str, ws: int, off: int, fn) -> bool:
            """Apply fn(bag) to a window unless it already holds this offset's effects; False if it is closed."""
            _, rec = window(group, ws)
            if rec["_held"] and _holds(rec["_held"], off):
                return True  # applied before a crash or a re-delivery: already there
            if rec["closed"]:
                return False
            # one offset may contribute several times to one window (events_in and late_events, say),
            # but a record delivered twice within a batch only once
            if off not in rec["_done"] or rec.get("_applying") == off:
                fn(rec["_bag"])
                rec["_done"].add(off)
                rec["_applying"] = off
                rec["dirty"] = True
                rec["_touched"] = True
                rec["_changed"] = True
            return True

        def pipeline_count(metric: str, ws: int, off: int, n: int = 1) -> None:
            bump("pipeline", ws, off, lambda b: b.count(metric, n))

        def get_chain(root: str, change: bool = False) -> chainlib.Chain:
            ch = chain_cache.get(root)
            if ch is None:
                stored = self.chains.get(root)
                ch = chainlib.Chain.from_dict(stored) if stored else chainlib.new_chain(root, p)
                chain_cache[root] = ch
                deleted_chains.discard(root)
            if change:
                changed_chains.add(root)
            return ch

        for rec in records:
            o = rec.offset
            if is_tick(rec):
                if not s.replay:
                    try:
                        tick_ms = int(orjson.loads(rec.value)["tick"])
                    except (ValueError, KeyError, TypeError):
                        continue
                    clock["now"] = max(clock["now"], tick_ms)
                    self._advance(p, o, clock["now"], out, get_chain, window, bump, open_chains, window_keys,
                                  chain_cache, win_cache, deleted_chains)
                continue
            received_ms = _int_header(rec.headers.get("received_at")) or rec.timestamp_ms
            try:
                ev = parse_event(rec.value, received_ms)
            except InvalidEvent as exc:
                out.deadletters.append((rec.value, exc.reason))
                pipeline_count("pipeline.deadletters", window_start(clock["now"] or received_ms, s.window_ms), o)
                continue
            if s.replay and ev.timestamp_ms > clock["now"]:
                clock["now"] = ev.timestamp_ms
            news_ms = clock["now"] if s.replay else max(clock["now"], received_ms)
            ch = get_chain(ev.root_execution_id, change=True)
            verdict = chainlib.apply(ch, ev, o, news_ms)
            ch.off = max(ch.off, o)
            if not ch.closed:
                open_chains.add(ch.root)
            arrival_ws = window_start(news_ms, s.window_ms)
            if verdict == "duplicate":
                pipeline_count("pipeline.duplicates", arrival_ws, o)
                continue
            ws = window_start(ev.timestamp_ms, s.window_ms)
            pipeline_count("pipeline.events_in", arrival_ws, o)
            if clock["now"] and ws + s.window_ms + s.lateness_ms <= clock["now"]:
                landed = False
            else:
                landed = bump(f"flow:{ev.flow_id or 'unknown'}", ws, o, lambda b, ev=ev: add_event(b, ev))
            if not landed:
                pipeline_count("pipeline.late_events", arrival_ws, o)
                log.info("late event counted in pipeline.late_events, not in its window",
                         extra={"execution_id": ev.execution_id, "timestamp_ms": ev.timestamp_ms,
                                "window_start_ms": ws, "clock_ms": clock["now"]})
            elif ev.org_name and ev.step_count and ev.outcome:
                month = month_start(ev.timestamp_ms)
                bump(f"org:{ev.org_name}", month, o, lambda b, ev=ev: add_org_steps(b, ev))
            if ev.event_type == "FLOW_FAIL" and "failures" in s.logs:
                out.logs.append(_log_record(ev.root_execution_id, failure_log(ev, chainlib.path_to(ch, ev.execution_id))))
            elif "events" in s.logs:
                out.logs.append(_log_record(ev.root_execution_id, event_log(ev)))
            if s.replay:
                self._advance(p, o, clock["now"], out, get_chain, window, bump, open_chains, window_keys,
                              chain_cache, win_cache, deleted_chains, only_if_due=True)

        if records:
            clock["off"] = max(clock["off"], records[-1].offset)
        if s.replay and records:
            self._advance(p, records[-1].offset, clock["now"], out, get_chain, window, bump, open_chains,
                          window_keys, chain_cache, win_cache, deleted_chains)

        chain_writes: dict[str, dict | None] = {root: chain_cache[root].to_dict() for root in changed_chains
                                                if root not in deleted_chains and root in chain_cache}
        for root in deleted_chains:
            chain_writes[root] = None
        window_writes: dict[str, dict | None] = {}
        for key, rec in win_cache.items():
            if rec.get("_delete"):
                window_writes[key] = None
                window_keys.discard(key)
                self._bags.pop(key, None)
                continue
            if not rec.get("_changed"):
                continue  # only read (by a tick's scan): the store already holds it
            if rec.get("_touched") and records:
                rec["applied"] = _add_range(rec["applied"], batch_lo, batch_hi)
            bag = rec["_bag"]
            rec = {k: v for k, v in rec.items() if not k.startswith("_")} | {"bag": bag.to_dict()}
            window_writes[key] = rec
            self._bags[key] = (rec, bag)  # valid while the store holds this very dict (see window())
        window_writes[clock_key] = clock
        return out, chain_writes, window_writes

    def _advance(self, p, off, now, out, get_chain, window, bump, open_chains, window_keys, chain_cache, win_cache,
                 deleted_chains, only_if_due: bool = False) -> None:
        """At clock `now` (a tick, or the event-time watermark): close chains and windows, emit what is due."""
        s = self.s
        if only_if_due and now - self._last_advance.get(p, 0) < s.window_ms // 4:
            return
        self._last_advance[p] = now
        closed = self._closed_chains[p]
        for root, (_closed_ms, closed_off) in list(closed.items()):
            if closed_off == off:  # re-processing the record that closed it: its window may lack the chain
                self._emit_chain(get_chain(root), off, out, bump)
        for root in list(open_chains):
            ch = chain_cache.get(root)
            if ch is None:  # untouched in this batch: check the stored record, decode only if it closes
                stored = self.chains.get(root)
                if stored is None or stored["closed"] is not None:
                    open_chains.discard(root)
                    continue
                status = chainlib.close_due_stored(stored, now, s.quiet_ms, s.timeout_ms)
            elif ch.closed:
                open_chains.discard(root)
                continue
            else:
                status = chainlib.close_due(ch, now, s.quiet_ms, s.timeout_ms)
            if status is None:
                continue
            ch = get_chain(root, change=True)
            chainlib.close(ch, status, now)
            ch.closed_off = off
            ch.off = max(ch.off, off)
            open_chains.discard(root)
            closed[root] = (now, off)
            self._emit_chain(ch, off, out, bump)
        # closed chain markers past the lateness horizon are deleted: later duplicates are too late anyway
        for root, (closed_ms, _closed_off) in list(closed.items()):
            if closed_ms + s.lateness_ms <= now:
                deleted_chains.add(root)
                del closed[root]
                chain_cache.pop(root, None)
        for key in list(window_keys):
            rec = win_cache.get(key)
            if rec is None:  # not touched in this batch: look at the stored record, load it only if it is due
                stored = self.windows.get(key)
                if stored is None:
                    window_keys.discard(key)
                    continue
                end = _window_end(stored, s.window_ms)
                if stored["closed"]:
                    if end + s.lateness_ms + CLOSED_RETENTION_MS > now:
                        continue
                elif not stored["dirty"] and end + s.lateness_ms > now:
                    continue
                _, rec = window(stored["group"], stored["ws"])
            end = _window_end(rec, s.window_ms)
            if rec["closed"]:
                if end + s.lateness_ms + CLOSED_RETENTION_MS <= now:
                    rec["_delete"] = True
                    rec["_changed"] = True
                continue
            closing = end + s.lateness_ms <= now
            if closing or rec["dirty"]:
                out.partials.append(_partial(p, rec, off, final=closing))
                rec["dirty"] = False
                rec["emitted_ms"] = now
                rec["_changed"] = True
            if closing:
                rec["closed"] = True


    def _emit_chain(self, ch: chainlib.Chain, off: int, out: Outputs, bump) -> None:
        """A closed chain's summary into its root flow's window (idempotent per offset) and, maybe, a log."""
        summary = ch.closed
        end_ms = summary.get("end_ms") or ch.closed_ms
        group = f"chain:{summary.get('root_flow_id') or 'unknown'}"
        bump(group, window_start(end_ms, self.s.window_ms), off, lambda b: add_chain(b, summary))
        if "chains" in self.s.logs:
            out.logs.append(_log_record(ch.root, chain_log(summary)))


def _window_end(rec: dict, window_ms: int) -> int:
    """End of a window record's span: its window, or the calendar month for the org groups."""
    return month_start(rec["ws"] + 32 * 86_400_000) if rec["group"].startswith("org:") else rec["ws"] + window_ms


def _partial(p: int, rec: dict, off: int, final: bool) -> tuple[bytes, dict]:
    return (f"{rec['group']}|{rec['ws']}".encode(),
            {"kind": "partial", "p": p, "group": rec["group"], "ws": rec["ws"], "seq": off, "final": final,
             "bag": rec["_bag"].to_dict()})


def _holds(ranges: list, off: int) -> bool:
    return any(lo <= off <= hi for lo, hi in ranges)


def _add_range(ranges: list, lo: int, hi: int) -> list:
    """Offset ranges, sorted and merged (adjacent ranges join), with [lo, hi] added."""
    out: list[list[int]] = []
    for a, b in sorted([*ranges, [lo, hi]]):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _log_record(trace_id: str, item: dict) -> tuple[bytes, dict]:
    return trace_id.encode(), {"kind": "log", "item": item}


def _int_header(v: bytes | None) -> int | None:
    try:
        return int(v) if v else None
    except ValueError:
        return None
