"""The outbox format: packing a batch's items into few records and reading them back."""

from __future__ import annotations

import orjson

from processor.engine import Outputs
from processor.outbox import OUTBOX_RECORD_MAX_BYTES, outbox_partition, outbox_records, unpacked


def partial(group: str, ws: int, p: int, pad: int = 0) -> tuple[bytes, dict]:
    return f"{group}|{ws}".encode(), {"kind": "partial", "p": p, "group": group, "ws": ws, "seq": 1, "final": False,
                                      "bag": {"counters": {"events|x:" + "y" * pad: 1}}}


def outputs(partials: list[tuple[bytes, dict]], logs: list[tuple[bytes, dict]] = ()) -> Outputs:
    out = Outputs()
    for key, item in partials:
        out.add_partial(key, item)
    for key, item in logs:
        out.add_log(key, item)
    return out


def test_items_round_trip_in_order_per_outbox_partition():
    a = outputs([partial(f"flow:{i}", 0, 0) for i in range(20)], [(b"root-1", {"kind": "log", "item": {"message": "m1"}})])
    b = outputs([partial(f"flow:{i}", 0, 1) for i in range(20)])
    records = outbox_records([a, b], 4)
    assert len(records) <= 4  # one record per outbox partition when small
    got = [(q, item) for q, value in records for item in unpacked([orjson.loads(value)])]
    assert sorted(orjson.dumps(i) for _q, i in got) == sorted(orjson.dumps(v) for _k, v in a.partials + a.logs +
                                                                b.partials)
    for q, item in got:  # every item in the partition of its key: both partitions' partials of a window meet
        key = f"{item['group']}|{item['ws']}".encode() if item["kind"] == "partial" else b"root-1"
        assert q == outbox_partition(key, 4)


def test_large_batches_are_split_under_the_record_limit():
    out = outputs([partial("flow:same", ws, 0, pad=5000) for ws in range(0, 200 * 60_000, 60_000)])
    records = outbox_records([out], 1)
    assert len(records) > 1 and all(len(v) <= OUTBOX_RECORD_MAX_BYTES + 6000 for _q, v in records)
    assert sum(len(orjson.loads(v)["items"]) for _q, v in records) == 200


def test_partition_is_stable_and_spread():
    assert outbox_partition(b"flow:a|60000", 8) == outbox_partition(b"flow:a|60000", 8)
    assert len({outbox_partition(f"flow:{i}|0".encode(), 8) for i in range(100)}) == 8


def test_unpacked_passes_single_items_through():
    single = {"kind": "partial", "p": "sink0", "group": "pipeline", "ws": 0, "seq": 3, "final": False, "bag": {}}
    assert list(unpacked([single, {"kind": "batch", "items": [single]}])) == [single, single]
