"""Ingest's window reports (ingest/report.py): one per window that saw requests, the certificate every window, a
last one when stopping, and a report Kafka refused kept and sent again under the same id."""

from __future__ import annotations

import orjson

from ingest.report import DeadLetterReason, Outcome, Reporter

W = 60_000
T0 = 1_790_000_000_000 // W * W


class Kafka:
    def __init__(self, fail: int = 0):
        self.fail, self.sent = fail, []

    async def send(self, key: bytes, value: bytes, headers: list) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker down")
        self.sent.append((key, orjson.loads(value), dict(headers)))


async def test_a_window_is_reported_once_it_is_over():
    r, kafka = Reporter(60, instance="h:1:0"), Kafka()
    r.request(Outcome.ACCEPTED, 3, now_ms=T0 + 1)
    r.request(Outcome.UNAUTHORIZED, now_ms=T0 + 2)
    r.deadlettered(DeadLetterReason.BAD_ITEM)
    r.roll(T0 + W - 1)
    await r.send_due(kafka.send)
    assert kafka.sent == []  # the window is not over
    r.roll(T0 + W)
    await r.send_due(kafka.send)
    [(key, value, headers)] = kafka.sent
    assert key == b"__ingest__" and headers["els-kind"] == b"ingest-report"
    assert value == {"report": f"h:1:0@{T0}", "ws": T0, "requests": {"accepted": 1, "unauthorized": 1},
                     "events": {"accepted": 3}, "deadletters": {"bad_item": 1}}
    assert headers["idempotency_key"] == f"h:1:0@{T0}".encode()


async def test_a_refused_report_is_sent_again_with_the_same_id():
    r, kafka = Reporter(60, instance="h:1:0"), Kafka(fail=1)
    r.request(Outcome.ACCEPTED, 1, now_ms=T0)
    r.roll(T0 + W)
    await r.send_due(kafka.send)
    assert kafka.sent == [] and len(r.pending) == 1
    r.request(Outcome.UNAVAILABLE, 2, now_ms=T0 + W + 5)
    r.roll(T0 + 2 * W)
    await r.send_due(kafka.send)
    assert [v["report"] for _, v, _ in kafka.sent] == [f"h:1:0@{T0}", f"h:1:0@{T0 + W}"]


async def test_quiet_windows_report_nothing_but_the_certificate():
    quiet, kafka = Reporter(60, instance="a"), Kafka()
    quiet.roll(T0)
    quiet.roll(T0 + W)
    await quiet.send_due(kafka.send)
    assert kafka.sent == []
    with_tls = Reporter(60, instance="b", tls_days_left=lambda: 13.25)
    with_tls.roll(T0)
    with_tls.roll(T0 + W)
    await with_tls.send_due(kafka.send)
    assert [v["tls_days_left"] for _, v, _ in kafka.sent] == [13.25]


async def test_stopping_reports_the_window_under_way():
    r, kafka = Reporter(60, instance="h"), Kafka()
    r.request(Outcome.TOO_LARGE, now_ms=T0 + 5)
    r.roll(T0 + 10, final=True)
    await r.send_due(kafka.send)
    assert kafka.sent[0][1]["requests"] == {"too_large": 1}


def test_the_certificate_s_days_left_come_from_the_served_file(tmp_path):
    import datetime

    import trustme

    from ingest.tls import certificate_days_left

    expires = datetime.datetime(2030, 1, 31, tzinfo=datetime.UTC)
    leaf = trustme.CA().issue_cert("localhost", not_after=expires)
    path = tmp_path / "leaf.crt"
    path.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    now = expires.timestamp() - 14.5 * 86_400
    assert certificate_days_left(str(path), now) == 14.5
    assert certificate_days_left(str(tmp_path / "missing.crt")) is None
