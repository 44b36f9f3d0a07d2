"""JSON views on the Faust web server, beside Faust's own /table/ inspection.

- /els/flows/: per-flow values of the open windows and the last closed one, merged over the partitions this
  worker owns (with several workers, ask each; the Datadog values are the merged truth).
- /els/chains/{root}/: one chain by its root execution id, routed by Faust to the worker
  that owns the chain's raw partition (chain state is co-partitioned with the raw topic).
- /els/status.json: the whole cluster's status, gathered from every raw partition's owner (processor/web/cluster.py);
  /els/status.local.json: this worker's part of it. /els/status/ (and / redirecting to it): the human page.
- /els/keys/{table}/?prefix=&contains=&limit=&values=: a table's keys across the cluster, each with its partition
  and owner; /els/keys.local/{table}/: this worker's part. /els/table/{table}/{key}/: one key's value, from its
  owner.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from processor.core.bag import Bag
from processor.sink.render import render_series
from processor.web import cluster
from processor.web.keys import KeyQuery, check_answer, local_keys, merged_keys
from processor.web.page import PAGE
from processor.web.status import (
    SINK_COUNTERS,
    Held,
    RecentRise,
    local_share,
    merge_shares,
    sink_state,
    sinks_combined,
    status_view,
)
from processor.web.tables import TABLE_HELP, TABLE_OWNER, Owner

if TYPE_CHECKING:
    import faust

    from common.config import Config
    from processor.engine import Engine
    from processor.health import Health
    from processor.pipeline import Pipeline
    from processor.sink.sink import Sink

WORKER_STATS = ("records", "batches", "deadletters", "gap_seeks", "gap_reads", "abandoned")


@dataclass(frozen=True)
class Parts:
    """The worker's state these views read, in readable form (the tables hold the state layer's encoded records)."""

    pipeline: Pipeline

    @property
    def cfg(self) -> Config:
        return self.pipeline.cfg

    @property
    def raw(self) -> faust.TopicT:
        return self.pipeline.raw

    @property
    def engine(self) -> Engine:
        return self.pipeline.engine

    @property
    def sink(self) -> Sink:
        return self.pipeline.sink

    @property
    def stats(self) -> dict[str, int]:
        # `abandoned`: batches and sink flushes a rebalance or a stop abandoned (processor/revocation.py);
        # `inbox_held`: raw records fetched for the next batches (at 4,000 the consumer waits for the agent);
        # `inbox_dropped`: those a rebalance or a stop dropped (processor/inbox.py)
        inbox = self.pipeline.inbox
        return {**self.pipeline.stats.as_dict(), "abandoned": self.pipeline.fence.abandoned,
                "inbox_held": len(inbox), "inbox_dropped": inbox.dropped}

    @property
    def health(self) -> Health:
        return self.pipeline.health

    @property
    def windows(self) -> dict[str, dict]:
        """Window records as {"group", "ws", "bag", ...} and clocks as {"now", "off"}, by key."""
        return self.pipeline.window_views()

    def chain(self, root: str) -> dict | None:
        return self.pipeline.chain_view(root)

    def items(self, name: str, table: faust.Table) -> list[tuple[str, object]]:
        """A table's local (key, value) pairs, values readable."""
        if name == "windows":
            return list(self.windows.items())
        if name == "chains":
            return [(root, self.chain(root)) for root in list(table.data.keys())]
        return list(table.items())

    def sizes(self) -> dict[str, int]:
        """Table sizes (local store, standby copies included): whether state stays bounded over time."""
        p = self.pipeline
        return {"table_chains": len(p.chains.data), "table_windows": len(p.windows.data),
                "table_sink": len(p.sink.table)}


def parts(app) -> Parts:
    """The one place that knows how processor/worker.py exposes its state (`app.pipeline`)."""
    return Parts(app.pipeline)


def flow_stats(windows, window_seconds: int, prefix: str) -> dict:
    """{flow_id: {"open": [...], "last_closed": {...}}} from the windows table's local records."""
    merged: dict[tuple[str, int], dict] = {}
    for key, rec in list(windows.items()):
        if key.endswith("|clock") or not rec.get("group", "").startswith("flow:"):
            continue
        slot = merged.setdefault((rec["group"], rec["ws"]), {"bag": Bag(), "closed": True})
        slot["bag"].merge(Bag.from_dict(rec["bag"]))
        slot["closed"] &= bool(rec.get("closed"))
    flows: dict[str, dict] = defaultdict(lambda: {"open": [], "last_closed": None})
    for (group, ws), slot in sorted(merged.items(), key=lambda kv: kv[0][1]):
        series = render_series(group, ws, window_seconds, slot["bag"], prefix=prefix)
        values = {_short(s["metric"], prefix, s["tags"]): s["points"][0]["value"] for s in series}
        entry = {"window_start_ms": ws, "labels": slot["bag"].labels, "values": values}
        flow = flows[group.split(":", 1)[1]]
        if slot["closed"]:
            flow["last_closed"] = entry
        else:
            flow["open"].append(entry)
    return dict(flows)


def _short(metric: str, prefix: str, tags: list[str]) -> str:
    name = metric[len(prefix) + 1:] if metric.startswith(prefix + ".") else metric
    extra = [t for t in tags if not t.startswith(("flow_name:", "flow_id:", "service:", "env:"))]
    return name + (f"{{{','.join(sorted(extra))}}}" if extra else "")


def _rendered(table: str, value, cfg) -> dict:
    """A window record's bag as the values Datadog gets from it (this partition's share of the window)."""
    if table != "windows" or not isinstance(value, dict) or not isinstance(value.get("bag"), dict):
        return {}
    prefix = cfg.els_metric_prefix
    series = render_series(value.get("group", ""), value.get("ws", 0), cfg.els_window_seconds,
                           Bag.from_dict(value["bag"]), prefix=prefix)
    return {"values": {_short(s["metric"], prefix, s["tags"]): s["points"][0]["value"] for s in series}}


class Cluster:
    """Who owns which partition, and asking them (the Faust-facing half of processor/web/cluster.py)."""

    def __init__(self, app):
        self.app = app

    def topic(self, owner: Owner) -> str:
        cfg = parts(self.app).cfg
        return cfg.els_raw_topic if owner is Owner.RAW else cfg.els_out_topic

    def owned(self, topic: str, asked: list[int] | None = None) -> list[int]:
        """The partitions of `topic` this worker actively owns (its tables also hold standby copies of others)."""
        try:
            actives = self.app.assignor.assigned_actives()
        except Exception:  # noqa: BLE001 - before the first assignment Faust may not know yet
            return []
        mine = {tp.partition for tp in actives if tp.topic == topic}
        return sorted(mine if asked is None else mine & set(asked))

    async def ask(self, topic: str, path: str, params: dict[str, str], local, accept=None):
        """Ask every owner of `topic`'s partitions (this worker through `local(asked)`, the others over HTTP)."""
        try:
            metadata = self.app.router.external_topics_metadata()
        except Exception:  # noqa: BLE001 - no assignment yet: every partition is shown without an owner
            metadata = {}
        owners = cluster.owners_of(metadata, topic, parts(self.app).cfg.els_partitions)

        async def remote(url: str, asked: list[int]) -> dict:
            query = {**params, "partitions": cluster.partitions_param(asked)}
            return await cluster.fetch_json(self.app.http_client, url, path, query)

        return await cluster.ask_owners(owners, str(self.app.conf.canonical_url), local, remote, accept)


def register(app) -> None:
    _register_basics(app)
    _register_status(app, Cluster(app))
    _register_keys(app, Cluster(app))


def _register_basics(app) -> None:
    @app.page("/els/flows/")
    async def flows_view(web, request):
        s = parts(app)
        return web.json(flow_stats(s.windows, s.cfg.els_window_seconds, s.cfg.els_metric_prefix))

    @app.page("/els/chains/{root}/")
    @app.topic_route(topic=parts(app).raw, match_info="root")  # the raw partition's owner holds the chain
    async def chain_view(web, request, root):
        s = parts(app)
        value = s.chain(root)
        if value is None:
            return web.json({"error": "no open or recently closed chain with this root", "root": root}, status=404)
        indexed = s.engine.open_chains_of(value.get("p"))
        # "scheduled": the worker will consider it for closing at each tick (diagnoses a chain that never closes)
        return web.json({**value, "scheduled": None if indexed is None else root in indexed})

    @app.page("/els/stats/")
    async def stats_view(web, request):
        s = parts(app)
        # ready: partitions assigned and their state recovered (Faust's "Worker ready"); `els up` waits for it
        # and neither the agent nor the sink keeps failing (processor/health.py)
        ready = app.rebalancing_count > 0 and not app.rebalancing and not s.health.failing
        return web.json({**s.stats, **{f"sink_{k}": v for k, v in s.sink.stats.items()}, **s.sizes(),
                         "ready": ready, "problems": s.health.problems()})

    @app.page("/els/status/")
    async def status_page(web, request):
        return web.html(PAGE)

    @app.page("/")
    async def index(web, request):
        """Registered before Faust's own "/" blueprint (applied at server start), so this one answers."""
        return web.text("", status=302, headers={"Location": "/els/status/"})


def _register_status(app, where: Cluster) -> None:
    retries = RecentRise()

    def local_status(asked: list[int] | None) -> dict:
        s = parts(app)
        now_ms = int(time.time() * 1000)
        owned = where.owned(s.cfg.els_raw_topic, asked)
        share = local_share(list(s.windows.items()), partitions=owned, window_seconds=s.cfg.els_window_seconds,
                            now_ms=now_ms)
        sink = sink_state(s.sink.stats, s.sink.client.dry_run, retries.sample(s.sink.stats.get("sink_retries", 0),
                                                                             now_ms))
        return {**share, "url": str(app.conf.canonical_url), "sink": sink,
                "worker": {k: s.stats.get(k, 0) for k in WORKER_STATS}, "problems": s.health.problems()}

    @app.page("/els/status.local.json")
    async def status_local(web, request):
        try:
            asked = cluster.parse_partitions(request.query.get("partitions"))
        except ValueError:
            return web.json({"error": "partitions must be a comma-separated list of numbers"}, status=400)
        return web.json(local_status(asked))

    @app.page("/els/status.json")
    async def status_json(web, request):
        cfg = parts(app).cfg
        got = Gathered()
        answers, states = await where.ask(cfg.els_raw_topic, "/els/status.local.json", {}, local_status, got.take)
        data = status_view(got.held, window_seconds=cfg.els_window_seconds, prefix=cfg.els_metric_prefix,
                           now_ms=int(time.time() * 1000), step_limit=cfg.els_monthly_step_limit,
                           event_limit=cfg.els_monthly_event_limit)
        data["partition_count"] = cfg.els_partitions
        data["partitions"] = [st.as_json() for st in states]
        data["workers"] = [{"url": a.url, "asked": a.asked, "answered": a.body is not None, "error": a.error,
                            "partitions": a.body["partitions"] if a.body else [], **got.workers.get(a.url, {})}
                           for a in answers]
        data["served_by"] = str(app.conf.canonical_url)
        data["sink"] = sinks_combined(list(got.sinks.values()))
        data["worker"] = {k: sum(w[k] for w in got.workers.values()) for k in WORKER_STATS}
        data["problems"] = [f"{url}: {p}" for url, problems in got.problems.items() for p in problems]
        return web.json(data)


class Gathered:
    """The workers' status answers, read as they come: a share that cannot be read raises, so it counts as none."""

    def __init__(self):
        self.held = Held()
        self.sinks: dict[str, dict] = {}
        self.workers: dict[str, dict] = {}
        self.problems: dict[str, list[str]] = {}

    def take(self, url: str, body: dict) -> None:
        held = merge_shares([body])
        sink = {k: body["sink"][k] for k in ("state", *SINK_COUNTERS)}
        worker = {k: int(body["worker"].get(k, 0)) for k in WORKER_STATS}
        self.held.merge(held)
        self.sinks[url] = sink
        self.workers[url] = worker
        self.problems[url] = [str(p) for p in body.get("problems") or ()]


def _unknown(app, web, name: str):
    return web.json({"error": "unknown table", "table": name, "tables": sorted(app.tables)}, status=404)


async def _ask_keys(where: Cluster, table: str, t, query: KeyQuery):
    """Every owner's keys of `table` matching `query` (this worker's from its own table `t`)."""
    topic = where.topic(TABLE_OWNER.get(table, Owner.RAW))

    def local(asked: list[int]) -> dict:
        return local_keys(parts(where.app).items(table, t), table=table, partitions=where.owned(topic, asked),
                          query=query)

    answers, states = await where.ask(topic, f"/els/keys.local/{table}/", query.params(), local, check_answer)
    return topic, answers, states


def _register_keys(app, where: Cluster) -> None:
    def table_and_query(web, request, table):
        """The table and the key query a keys route asks for, or the answer that refuses them (404, 400)."""
        t = app.tables.get(table)
        if t is None:
            return None, None, _unknown(app, web, table)
        try:
            return t, KeyQuery.from_params(request.query), None
        except ValueError as exc:
            return None, None, web.json({"error": str(exc)}, status=400)

    @app.page("/els/keys.local/{table}/")
    async def keys_local(web, request, table):
        t, query, refusal = table_and_query(web, request, table)
        if refusal is not None:
            return refusal
        try:
            asked = cluster.parse_partitions(request.query.get("partitions"))
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        owned = where.owned(where.topic(TABLE_OWNER.get(table, Owner.RAW)), asked)
        return web.json(local_keys(parts(app).items(table, t), table=table, partitions=owned, query=query))

    @app.page("/els/keys/{table}/")
    async def keys_view(web, request, table):
        t, query, refusal = table_and_query(web, request, table)
        if refusal is not None:
            return refusal
        topic, answers, states = await _ask_keys(where, table, t, query)
        return web.json({"table": table, "help": TABLE_HELP.get(table, t.help), "partitions_of": topic,
                         "prefix": query.prefix, "contains": query.contains, "limit": query.limit,
                         **merged_keys(answers, query), "partitions": [st.as_json() for st in states]})

    @app.page("/els/table/{table}/{key}/")
    async def value_view(web, request, table, key):
        """One key's value, from the worker that owns it. Faust's /table/<name>/<key>/ routes a key by its hash,
        but these tables keep a key in the partition of the raw (or outbox) record it belongs to, so with
        several workers Faust may ask one that does not hold it."""
        t = app.tables.get(table)
        if t is None:
            return _unknown(app, web, table)
        query = KeyQuery(prefix=key, limit=1, values=True)  # the key itself sorts before any longer match
        _topic, answers, states = await _ask_keys(where, table, t, query)
        found = [k for k in merged_keys(answers, query)["keys"] if k["key"] == key]
        if found:
            return web.json({"table": table, **found[0], **_rendered(table, found[0]["value"], parts(app).cfg)})
        down = [st.as_json() for st in states if not st.answered]
        why = "key not found" if not down else "key not found in the partitions that answered"
        return web.json({"error": why, "table": table, "key": key, "not_answering": down}, status=503 if down else 404)
