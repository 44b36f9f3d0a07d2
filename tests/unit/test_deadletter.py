"""common.deadletter: one header format for every stage, reasons capped, the producer's future handed back."""

import asyncio

from common.deadletter import MAX_REASON_BYTES, DeadLetterWriter, Stage, deadletter_headers


def test_headers_name_the_stage_reason_and_receive_time():
    h = dict(deadletter_headers(Stage.SINK, "datadog said 400", 1700000000000, {"status": "400"}))
    assert h == {"reason": b"datadog said 400", "stage": b"sink", "received_at": b"1700000000000", "status": b"400"}


def test_long_reasons_are_capped_and_unknown_receive_time_is_left_out():
    h = dict(deadletter_headers(Stage.INGEST, "x" * 10_000))
    assert len(h["reason"]) == MAX_REASON_BYTES and "received_at" not in h


async def test_writer_sends_to_its_topic_and_returns_the_ack():
    sent = []

    async def send(topic, value, headers):
        sent.append((topic, value, headers))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result("acked")
        return fut

    writer = DeadLetterWriter("dl", Stage.REPLAY, send)
    assert await (await writer.write(b"raw", "bad")) == "acked"
    assert sent == [("dl", b"raw", [("reason", b"bad"), ("stage", b"replay")])]
