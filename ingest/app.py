"""The ELS webhook: authenticate, unwrap, write to Kafka, and answer 202 only after Kafka acknowledged.

Status codes are the contract's: 202 accepted (with counts), 400 nothing usable (the body is dead-lettered),
401 bad secret (nothing written), 413 too large (a prefix is dead-lettered), 503 + Retry-After when Kafka does
not acknowledge in time. Anything a client sends is answered with one of those, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time

import orjson
from aiohttp import http_exceptions, web

from common.config import Config
from ingest.auth import Authenticator
from ingest.envelope import BodyError, Reject, unwrap
from ingest.kafka import KafkaWriter, NotAcknowledged
from ingest.report import DeadLetterReason, Outcome, Reporter
from ingest.stats import IntervalReport, Stats
from ingest.tls import ReloadableTls, TlsError, certificate_days_left

log = logging.getLogger("els.ingest")

web_exceptions_payload = (http_exceptions.HttpProcessingError, asyncio.IncompleteReadError, ValueError)

DEADLETTER_PREFIX_BYTES = 64 * 1024  # how much of an oversized body is kept in the dead-letter topic
RETRY_AFTER_SECONDS = "5"
STATS_EVERY_SECONDS = 60.0
REPORT_CHECK_SECONDS = 5.0  # how often a window's report is looked for (ingest/report.py)
# We decompress ourselves, bounded, and keep the original bytes of an unusable body for the dead-letter topic.
SERVER_OPTIONS = {"auto_decompress": False}

CONFIG = web.AppKey("config", Config)
WRITER = web.AppKey("writer", KafkaWriter)
STATS = web.AppKey("stats", Stats)
AUTH = web.AppKey("auth", Authenticator)
REPORTER = web.AppKey("reporter", Reporter)


def _json(status: int, body: dict, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


async def _read_body(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """The body, read up to limit+1 bytes: (bytes, too_large)."""
    length = request.content_length
    if length is not None:
        if length > limit:
            return await _read_prefix(request, DEADLETTER_PREFIX_BYTES), True
        # Okta's case: one read, no join (aiohttp's readexactly(0) raises at EOF, hence the guard)
        return (await request.content.readexactly(length) if length else b""), False
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            chunks.append(chunk)
            return b"".join(chunks)[:DEADLETTER_PREFIX_BYTES], True
        chunks.append(chunk)
    return b"".join(chunks), False


async def _read_prefix(request: web.Request, size: int) -> bytes:
    """The first `size` bytes of the body (one read() may return less than asked)."""
    chunks, got = [], 0
    while got < size:
        chunk = await request.content.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _dl_headers(request: web.Request, encoding: str | None) -> dict[str, str]:
    """What a dead letter keeps of the request's headers (built only when something is dead-lettered)."""
    return {k: v for k, v in (("content_type", request.headers.get("Content-Type")),
                              ("content_encoding", encoding)) if v}


ACCEPTED_ONE = orjson.dumps({"accepted": 1, "rejected": 0})


async def post_events(request: web.Request) -> web.Response:
    """POST /v1/events; an unexpected bug is logged and answered 503 (retry), never a 500 with a stack trace."""
    try:
        return await _post_events(request)
    except (web.HTTPException, asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return _json(503, {"error": "internal error; retry later"}, {"Retry-After": RETRY_AFTER_SECONDS})


async def _post_events(request: web.Request) -> web.Response:
    app = request.app
    cfg, writer, stats, reporter = app[CONFIG], app[WRITER], app[STATS], app[REPORTER]
    stats.requests += 1
    if not app[AUTH].check(request.headers):
        stats.status_401 += 1
        reporter.request(Outcome.UNAUTHORIZED)
        return _json(401, {"error": f"missing or invalid secret in the {cfg.els_auth_header} header"},
                     {"WWW-Authenticate": "Bearer"})
    received_ms = _now_ms()
    encoding = request.headers.get("Content-Encoding")
    try:
        body, too_large = await _read_body(request, cfg.els_max_body_bytes)
    except web_exceptions_payload as exc:
        stats.status_400 += 1
        reporter.request(Outcome.BAD_BODY)
        return _json(400, {"error": f"unreadable request body: {exc}"})
    stats.bytes_in += len(body)
    if too_large:
        return await _refuse(writer, stats, reporter, 413, f"body is larger than {cfg.els_max_body_bytes} bytes",
                             body, received_ms, {**_dl_headers(request, encoding), "truncated": "true"})
    try:
        result = unwrap(body, encoding, cfg.els_max_body_bytes)
    except BodyError as exc:
        return await _refuse(writer, stats, reporter, exc.status, exc.reason, body, received_ms,
                             _dl_headers(request, encoding))
    try:
        await writer.write(result.events, result.rejects, received_ms,
                           extra_headers=_dl_headers(request, encoding) if result.rejects else None)
    except NotAcknowledged as exc:
        stats.status_503 += 1
        reporter.request(Outcome.UNAVAILABLE, len(result.events))
        log.warning("answering 503: %s", exc)
        return _json(503, {"error": str(exc)}, {"Retry-After": RETRY_AFTER_SECONDS})
    stats.status_202 += 1
    stats.events_accepted += len(result.events)
    stats.items_rejected += len(result.rejects)
    reporter.request(Outcome.ACCEPTED, len(result.events))
    if result.rejects:
        reporter.deadlettered(DeadLetterReason.BAD_ITEM, len(result.rejects))
    if len(result.events) == 1 and not result.rejects:
        return web.Response(status=202, body=ACCEPTED_ONE, content_type="application/json")
    return _json(202, {"accepted": len(result.events), "rejected": len(result.rejects)})


async def _refuse(writer: KafkaWriter, stats: Stats, reporter: Reporter, status: int, reason: str, body: bytes,
                  received_ms: int, headers: dict[str, str]) -> web.Response:
    """Keep the unusable body in the dead-letter topic, then answer 4xx (503 if even that cannot be written)."""
    try:
        await writer.write([], [Reject(reason, body)], received_ms, extra_headers=headers)
    except NotAcknowledged as exc:
        stats.status_503 += 1
        reporter.request(Outcome.UNAVAILABLE)
        return _json(503, {"error": f"{reason}; and it could not be kept: {exc}"}, {"Retry-After": RETRY_AFTER_SECONDS})
    stats.refused(status)
    stats.items_rejected += 1
    too_large = status == 413
    reporter.request(Outcome.TOO_LARGE if too_large else Outcome.BAD_BODY)
    reporter.deadlettered(DeadLetterReason.TOO_LARGE if too_large else DeadLetterReason.BAD_BODY)
    return _json(status, {"error": reason})


async def healthz(request: web.Request) -> web.Response:
    return _json(200, {"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    if await request.app[WRITER].ready():
        return _json(200, {"status": "ready"})
    return _json(503, {"status": "not ready", "reason": "cannot reach Kafka"}, {"Retry-After": RETRY_AFTER_SECONDS})


async def _log_stats(report: IntervalReport, every: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        report.emit(loop.time())


async def _send_reports(reporter: Reporter, writer: KafkaWriter) -> None:
    """Each window's report into the raw topic once the window is over (ingest/report.py)."""
    while True:
        await asyncio.sleep(REPORT_CHECK_SECONDS)
        reporter.roll()
        await reporter.send_due(writer.write_record)


def create_app(cfg: Config, stats_every: float = STATS_EVERY_SECONDS) -> web.Application:
    """The aiohttp application; Kafka connects in the background when it starts, and every `stats_every`
    seconds a line logs what happened in that interval."""
    auth = Authenticator(cfg.auth_tokens, cfg.els_auth_header, cfg.els_auth_disabled)
    # aiohttp's own limit is a backstop above ours: we read the body ourselves to dead-letter a prefix.
    # No middleware: the guard against 500s is inside post_events, the only handler that reads client input
    # (aiohttp's middleware chain costs a few percent of a request).
    app = web.Application(client_max_size=cfg.els_max_body_bytes * 2 + 1024)
    app[CONFIG] = cfg
    app[WRITER] = KafkaWriter(cfg)
    app[STATS] = Stats()
    app[AUTH] = auth
    cert = cfg.els_tls_cert_file
    app[REPORTER] = Reporter(cfg.els_window_seconds,
                             tls_days_left=(lambda: certificate_days_left(cert)) if cert else (lambda: None))
    app.router.add_post("/v1/events", post_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

    async def lifecycle(app: web.Application):
        app[WRITER].start()
        loop = asyncio.get_running_loop()
        report = IntervalReport(app[STATS], loop.time())
        stats_task = loop.create_task(_log_stats(report, stats_every))
        report_task = loop.create_task(_send_reports(app[REPORTER], app[WRITER]))
        yield
        for task in (stats_task, report_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        app[REPORTER].roll(final=True)  # the last window's report, before the producer flushes and stops
        await app[REPORTER].send_due(app[WRITER].write_record)
        await app[WRITER].stop()
        report.emit(loop.time())  # the last, shorter interval

    app.cleanup_ctx.append(lifecycle)
    return app


def _tls(cfg: Config) -> ReloadableTls | None:
    """The HTTPS context when ELS_TLS_CERT_FILE or ELS_TLS_KEY_FILE is set; a bad file stops the start (exit 2)."""
    if not (cfg.els_tls_cert_file or cfg.els_tls_key_file):
        return None
    try:
        return ReloadableTls(cfg.els_tls_cert_file, cfg.els_tls_key_file)
    except TlsError as exc:
        print(f"els ingest: cannot serve HTTPS: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _reload_on_sighup(tls: ReloadableTls):
    """A cleanup context: SIGHUP re-reads the certificate and key while the server runs."""

    async def handler(app: web.Application):
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, tls.reload)
        yield
        loop.remove_signal_handler(signal.SIGHUP)

    return handler


def _event_loop(cfg: Config) -> asyncio.AbstractEventLoop | None:
    """uvloop's event loop unless ELS_INGEST_UVLOOP=0 (None: aiohttp makes asyncio's)."""
    if not cfg.els_ingest_uvloop:
        return None
    try:
        import uvloop
    except ImportError:  # a platform without uvloop (Windows): the same server, a little slower
        log.warning("uvloop is not installed; ingest runs on asyncio's event loop (ELS_INGEST_UVLOOP=0 says so)")
        return None
    return uvloop.new_event_loop()


def run(cfg: Config) -> None:
    """`els ingest`: serve until SIGINT/SIGTERM; in-flight requests finish and accepted events are flushed."""
    tls = _tls(cfg)
    loop = _event_loop(cfg)
    app = create_app(cfg)
    if tls is not None:
        app.cleanup_ctx.append(_reload_on_sighup(tls))
    log.debug("ingest settings", extra={"settings": cfg.redacted()})  # secrets only as <set>/<unset>
    if cfg.els_auth_disabled:
        log.warning("ELS_AUTH_DISABLED=1: accepting events without a secret (development only)")
    scheme = "https" if tls else "http"
    log.info("ingest listening", extra={"url": f"{scheme}://{cfg.els_ingest_host}:{cfg.els_ingest_port}/v1/events",
                                        "raw_topic": cfg.els_raw_topic, "secrets": len(cfg.auth_tokens),
                                        "tls_cert_file": cfg.els_tls_cert_file,
                                        "event_loop": "uvloop" if loop else "asyncio"})
    web.run_app(app, host=cfg.els_ingest_host, port=cfg.els_ingest_port, print=None, shutdown_timeout=15,
                access_log=None, handle_signals=True, ssl_context=tls.listening if tls else None,
                loop=loop, **SERVER_OPTIONS)
