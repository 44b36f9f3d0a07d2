"""Structured (JSON lines) logging for every process of the pipeline.

One line per log record with `ts`, `level`, `logger`, `msg` and any `extra=` fields, so operators can parse
the pipeline's own logs. Secrets are never passed to loggers; as a second line of defence, every configured
secret value is masked in formatted output.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import orjson

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_secrets: list[str] = []


def register_secrets(values) -> None:
    """Values that must never appear in a log line (tokens, API keys)."""
    for v in values:
        if v and len(v) >= 4 and v not in _secrets:
            _secrets.append(v)


def _mask(text: str) -> str:
    for s in _secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


class SecretMask(logging.Filter):
    """Masks the secrets in a logger's records before any handler sees them: for libraries whose records reach
    handlers this module does not format (the Faust worker installs its own), e.g. aiokafka's DEBUG dump of
    every request, a SASL PLAIN authentication with the password in it included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            text = record.getMessage()
            masked = _mask(text)
            if masked != text:
                record.msg, record.args = masked, ()
        return True


def mask_logger(name: str) -> None:
    """Attach SecretMask to the logger `name` (idempotent)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, SecretMask) for f in logger.filters):
        logger.addFilter(SecretMask())


class RepeatThrottle(logging.Filter):
    """At most one line per logger and message each `interval_s` at WARNING and above, the next one saying how
    many were held back: a client retrying every 100 ms while Kafka is down (aiokafka's heartbeat, Faust's
    fetcher) would otherwise write ~10 ERROR lines a second. On a handler it sees every logger's records
    (`throttle_repeats`: ingest's JSON handler); in a Faust worker, whose handlers Faust replaces, it sits on the
    Kafka and Faust loggers themselves (`throttle_loggers`)."""

    MAX_KEYS = 1000

    def __init__(self, interval_s: float = 10.0, clock=time.monotonic):
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._seen: dict[tuple[str, str], list] = {}  # (logger, message template) -> [first shown at, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            seen[1] += 1
            return False
        if len(self._seen) >= self.MAX_KEYS:
            self._seen.clear()
        self._seen[key] = [now, 0]
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} [{seen[1]} more like this in the last {self.interval_s:g} s]"
        return True


def throttle_repeats(handlers, interval_s: float = 10.0) -> None:
    """Attach one RepeatThrottle to each of `handlers` that has none (idempotent)."""
    for h in handlers:
        if not any(isinstance(f, RepeatThrottle) for f in h.filters):
            h.addFilter(RepeatThrottle(interval_s))


def throttle_loggers(prefixes: tuple[str, ...], interval_s: float = 10.0) -> None:
    """Attach one shared RepeatThrottle to every logger created so far whose name starts with one of `prefixes`
    (a logger's filters see only its own records, and Faust's worker replaces the root handlers when it starts)."""
    throttle = RepeatThrottle(interval_s)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (isinstance(logger, logging.Logger) and name.startswith(prefixes)
                and not any(isinstance(f, RepeatThrottle) for f in logger.filters)):
            logger.addFilter(throttle)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _mask(orjson.dumps(out, default=str).decode())


def setup(level: str | None = None) -> None:
    """Install the JSON formatter on the root logger (idempotent)."""
    level = (level or os.environ.get("ELS_LOG_LEVEL") or "INFO").upper()
    root = logging.getLogger()
    for h in root.handlers:
        if isinstance(h.formatter, JsonFormatter):
            root.setLevel(level)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    throttle_repeats([handler])
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries are chatty at INFO about every (re)connection; keep their warnings.
    for noisy in ("aiokafka", "kafka", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
