"""Talking to Datadog: datadog-api-client's async client, or a dry-run file when no API key is set.

The async client (AsyncApiClient, on aiosonic: the `async` extra) is used on purpose: the sink runs inside the Faust worker's event
loop, and the sync client would block that loop for the whole request (and its urllib3 retries), stalling
aggregation. The client's own retries are off; processor/sink/delivery.py decides what to retry and when.
DD_URL, when set, replaces the host of every operation (metrics and logs alike), because a Configuration built
with `host=` selects no per-operation server.

Bodies arrive already encoded and gzipped (processor/sink/encode.py: orjson, no model object per item, gzip in a
thread). They still go through the client's API classes (MetricsApi.submit_metrics, LogsApi.submit_log: the
operation's host and server, DD-API-KEY, Content-Type, Content-Encoding, User-Agent, request timeout, its aiosonic
HTTP client); one step is bypassed: rest.py's body encoding (`json.dumps` of `data_to_dict(model)`, then zlib, in
the event loop), which cost ~15-40 us per series or log on top of ~40 us to build the model. ApiClient.call_api
reads a file-like body into bytes (data_to_dict), so the gzip body is handed over as io.BytesIO and
PreEncodedApiClient._call_api posts those bytes as they are; input type checks are off for the sink's
configuration, since the body is not a model (tests/unit/sink/test_encode.py validates the bodies against the
models instead).
"""

from __future__ import annotations

import asyncio
import io
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
from datadog_api_client.v2.model.metric_content_encoding import MetricContentEncoding
from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
from datadog_api_client.v2.model.metric_point import MetricPoint
from datadog_api_client.v2.model.metric_series import MetricSeries

from common.config import Config
from processor.sink.encode import Batch, compress, encode_now, logs_json, series_json

log = logging.getLogger("els.sink")

REQUEST_TIMEOUT_S = 30.0


@dataclass
class Answer:
    status: int | None  # None: no answer (connection error, timeout)
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


def series_model(s: dict) -> MetricSeries:
    """The client's model of a rendered series (no longer on the send path: tests and the encode bench)."""
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


class PreEncodedApiClient(AsyncApiClient):
    """AsyncApiClient whose last step posts the body as the sink encoded it (bytes, gzip) instead of rest.py's
    json.dumps + zlib, and answers with an Answer rather than raising on non-2xx."""

    async def _call_api(self, method, url, query_params=None, header_params=None, body=None, post_params=None,
                        response_type=None, return_http_data_only=None, preload_content=True, request_timeout=None,
                        check_type=None) -> Answer:
        if not isinstance(body, bytes):
            raise TypeError("PreEncodedApiClient sends bodies encoded by processor/sink/encode.py only")
        from aiosonic.timeout import Timeouts

        timeouts = Timeouts(request_timeout=request_timeout) if request_timeout else None
        response = await self.rest_client._client.request(url, method, header_params, query_params, body,
                                                          timeouts=timeouts)
        text = (await response.content()).decode("utf-8", "replace")
        return Answer(response.status_code, dict(response.headers.copy()), text)


class DatadogClient:
    """POST series and logs; every outcome comes back as an Answer, never as an exception."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dry_run = not cfg.dd_api_key
        # every dry-run line names the run that wrote it: runs append to one file, and `run` tells them apart
        self.run_id = f"{os.getpid()}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        self._client: PreEncodedApiClient | None = None
        self._metrics: MetricsApi | None = None
        self._logs: LogsApi | None = None

    def _api(self) -> PreEncodedApiClient:
        if self._client is None:
            conf = configuration(self.cfg)
            conf.check_input_type = False  # the body is bytes, not a MetricPayload / HTTPLog model
            self._client = PreEncodedApiClient(conf)
            self._metrics, self._logs = MetricsApi(self._client), LogsApi(self._client)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.__aexit__(None, None, None)  # closes its aiohttp session
            self._client = self._metrics = self._logs = None

    async def post_series(self, series: list[dict]) -> Answer:
        """One series request: a Batch carries its gzip body (sender.py); a plain list is encoded here."""
        if self.dry_run:
            return self._dry("/api/v2/series", {"series": series})
        gz = await _gzip_body(series, series_json)
        self._api()
        return await self._call(lambda: self._metrics.submit_metrics(body=io.BytesIO(gz),
                                                                     content_encoding=MetricContentEncoding.GZIP))

    async def post_logs(self, items: list[dict]) -> Answer:
        if self.dry_run:
            return self._dry("/api/v2/logs", items)
        gz = await _gzip_body(items, logs_json)
        self._api()
        return await self._call(lambda: self._logs.submit_log(body=io.BytesIO(gz),
                                                              content_encoding=ContentEncoding.GZIP))

    async def _call(self, call) -> Answer:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S + 5):
                return await call()
        except ApiException as exc:  # body arrives already decoded (a dict) or as bytes
            body = exc.body
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else orjson.dumps(body).decode()
            return Answer(exc.status, dict(exc.headers or {}), text)
        except (aiosonic.exceptions.AiosonicError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Answer(None, {}, repr(exc))

    def _dry(self, path: str, body) -> Answer:
        """One line per request in the dry-run file (the items, as they would be sent)."""
        line = orjson.dumps({"at": int(time.time() * 1000), "run": self.run_id, "path": path, "body": body})
        os.makedirs(os.path.dirname(self.cfg.els_dry_run_file) or ".", exist_ok=True)
        with open(self.cfg.els_dry_run_file, "ab") as f:
            f.write(line + b"\n")
        return Answer(202)


async def _gzip_body(items: list[dict], join) -> bytes:
    if isinstance(items, Batch):
        if items.gz is None:
            items.compressed(await compress(items.json_body(join)))
        return items.gz
    return await compress(join(encode_now(items)))
