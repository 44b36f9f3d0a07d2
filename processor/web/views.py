"""JSON views on the Faust web server, beside Faust's own /table/ inspection.

- /els/flows/: per-flow values of the open windows and the last closed one, merged over the partitions this
  worker owns (with several workers, ask each; the Datadog values are the merged truth).
- /els/chains/{root}/: one chain by its root execution id, routed by Faust to the worker
  that owns the chain's raw partition (chain state is co-partitioned with the raw topic).
- /els/status/ (and / redirecting to it): the human status page; it polls /els/status.json (processor/web/status.py).
"""

from __future__ import annotations

import time
from collections import defaultdict

from processor.core.bag import Bag
from processor.sink.render import render_series
from processor.web.page import PAGE
from processor.web.status import RecentRise, sink_state, status_data


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


def register(app) -> None:
    pipeline = app.pipeline
    cfg = pipeline.cfg

    @app.page("/els/flows/")
    async def flows_view(web, request):
        return web.json(flow_stats(pipeline.window_views(), cfg.els_window_seconds, cfg.els_metric_prefix))

    @app.page("/els/chains/{root}/")
    @app.topic_route(topic=pipeline.raw, match_info="root")  # the raw partition's owner holds the chain
    async def chain_view(web, request, root):
        value = pipeline.chain_view(root)
        if value is None:
            return web.json({"error": "no open or recently closed chain with this root", "root": root}, status=404)
        indexed = pipeline.engine.open_chains_of(value.get("p"))
        # "scheduled": the worker will consider it for closing at each tick (diagnoses a chain that never closes)
        return web.json({**value, "scheduled": None if indexed is None else root in indexed})

    @app.page("/els/stats/")
    async def stats_view(web, request):
        # table sizes (local store, standby copies included) show whether state stays bounded over time
        sizes = {"table_chains": len(pipeline.chains), "table_windows": len(pipeline.windows),
                 "table_sink": len(pipeline.sink.table)}
        return web.json({**pipeline.stats.as_dict(), **{f"sink_{k}": v for k, v in pipeline.sink.stats.items()},
                         **sizes})

    def owned_partitions() -> list[int] | None:
        """The raw partitions this worker actively owns (its table also holds standby copies of others)."""
        try:
            actives = app.assignor.assigned_actives()
        except Exception:  # noqa: BLE001 - before the first assignment Faust may not know yet
            return []
        return sorted(tp.partition for tp in actives if tp.topic == cfg.els_raw_topic)

    retries = RecentRise()

    @app.page("/els/status.json")
    async def status_json(web, request):
        now_ms = int(time.time() * 1000)
        data = status_data(list(pipeline.window_views().items()), window_seconds=cfg.els_window_seconds,
                           prefix=cfg.els_metric_prefix, partitions=owned_partitions(), now_ms=now_ms)
        sink = pipeline.sink
        data["partition_count"] = cfg.els_partitions
        data["sink"] = sink_state(sink.stats, sink.client.dry_run,
                                  retries.sample(sink.stats.get("sink_retries", 0), now_ms))
        stats = pipeline.stats.as_dict()
        data["worker"] = {k: stats.get(k, 0) for k in ("records", "batches", "deadletters", "gap_seeks")}
        return web.json(data)

    @app.page("/els/status/")
    async def status_page(web, request):
        return web.html(PAGE)

    @app.page("/")
    async def index(web, request):
        """Registered before Faust's own "/" blueprint (applied at server start), so this one answers."""
        return web.text("", status=302, headers={"Location": "/els/status/"})
