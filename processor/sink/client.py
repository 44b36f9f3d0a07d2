"""Talking to Datadog: datadog-api-client's async client, or a dry-run file when no API key is set.

The async client (AsyncApiClient, on aiosonic: the `async` extra) is used on purpose: the sink runs inside the Faust worker's event
loop, and the sync client would block that loop for the whole request (and its urllib3 retries), stalling
aggregation. The client's own retries are off; processor/sink/delivery.py decides what to retry and when.
DD_URL, when set, replaces the host of every operation (metrics and logs alike), because a Configuration built
with `host=` selects no per-operation server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field

import aiohttp
import aiosonic.exceptions
import orjson
from datadog_api_client import AsyncApiClient, Configuration
from datadog_api_client.exceptions import ApiException
from datadog_api_client.v2.api.logs_api import LogsApi
from datadog_api_client.v2.api.metrics_api import MetricsApi
from datadog_api_client.v2.model.content_encoding import ContentEncoding
from datadog_api_client.v2.model.http_log import HTTPLog
from datadog_api_client.v2.model.http_log_item import HTTPLogItem
from datadog_api_client.v2.model.metric_content_encoding import MetricContentEncoding
from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
from datadog_api_client.v2.model.metric_payload import MetricPayload
from datadog_api_client.v2.model.metric_point import MetricPoint
from datadog_api_client.v2.model.metric_series import MetricSeries

from common.config import Config

log = logging.getLogger("els.sink")

REQUEST_TIMEOUT_S = 30.0


@dataclass
class Answer:
    status: int | None  # None: no answer (connection error, timeout)
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


def series_model(s: dict) -> MetricSeries:
    kwargs = {"metric": s["metric"], "type": MetricIntakeType(s["type"]),
              "points": [MetricPoint(timestamp=p["timestamp"], value=p["value"]) for p in s["points"]],
              "tags": s.get("tags", [])}
    if s.get("interval"):
        kwargs["interval"] = s["interval"]
    return MetricSeries(**kwargs)


def configuration(cfg: Config) -> Configuration:
    """The client configuration every Datadog call of the pipeline uses (sink and `els datadog install`):
    DD_URL replaces every operation's host, else DD_SITE picks the site; the API key; no client retries."""
    conf = Configuration(host=cfg.dd_url.rstrip("/")) if cfg.dd_url else Configuration()
    conf.server_variables["site"] = cfg.dd_site
    conf.api_key["apiKeyAuth"] = cfg.dd_api_key
    conf.enable_retry = False
    conf.request_timeout = REQUEST_TIMEOUT_S
    return conf


class DatadogClient:
    """POST series and logs; every outcome comes back as an Answer, never as an exception."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dry_run = not cfg.dd_api_key
        # every dry-run line names the run that wrote it: runs append to one file, and `run` tells them apart
        self.run_id = f"{os.getpid()}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        self._client: AsyncApiClient | None = None

    def _api(self) -> AsyncApiClient:
        if self._client is None:
            self._client = AsyncApiClient(configuration(self.cfg))
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.__aexit__(None, None, None)  # closes its aiohttp session
            self._client = None

    async def post_series(self, series: list[dict]) -> Answer:
        if self.dry_run:
            return self._dry("/api/v2/series", {"series": series})
        body = MetricPayload(series=[series_model(s) for s in series])
        return await self._call(MetricsApi(self._api()).submit_metrics(body=body,
                                                                      content_encoding=MetricContentEncoding.GZIP))

    async def post_logs(self, items: list[dict]) -> Answer:
        if self.dry_run:
            return self._dry("/api/v2/logs", items)
        body = HTTPLog([HTTPLogItem(**item) for item in items])
        return await self._call(LogsApi(self._api()).submit_log(body=body, content_encoding=ContentEncoding.GZIP))

    async def _call(self, coro) -> Answer:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S + 5):
                await coro
            return Answer(202)
        except ApiException as exc:  # body arrives already decoded (a dict) or as bytes
            body = exc.body
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else orjson.dumps(body).decode()
            return Answer(exc.status, dict(exc.headers or {}), text)
        except (aiosonic.exceptions.AiosonicError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Answer(None, {}, repr(exc))

    def _dry(self, path: str, body) -> Answer:
        line = orjson.dumps({"at": int(time.time() * 1000), "run": self.run_id, "path": path, "body": body})
        os.makedirs(os.path.dirname(self.cfg.els_dry_run_file) or ".", exist_ok=True)
        with open(self.cfg.els_dry_run_file, "ab") as f:
            f.write(line + b"\n")
        return Answer(202)
