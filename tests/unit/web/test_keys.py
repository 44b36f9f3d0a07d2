"""Table keys (processor/web/keys.py, tables.py): the help texts' examples are real keys, every key's partition is
read from the key or its value, and listing by prefix is sorted, limited and merged across workers."""

from __future__ import annotations

import re

import orjson
import pytest
from aiokafka.partitioner import murmur2

from processor.core.model import parse_event
from processor.core.windows import month_start, window_start
from processor.web.cluster import Answer
from processor.web.keys import MAX_LIMIT, KeyQuery, check_answer, local_keys, merged_keys
from processor.web.tables import TABLE_HELP, TABLE_OWNER, Owner, partition_of, table_help
from tests.helpers.paths import SAMPLES

DEFAULT_PARTITIONS, DEFAULT_WINDOW_MS = 8, 60_000


def sample():
    return orjson.loads((SAMPLES / "doc-parent-flow-start.json").read_bytes())


def test_the_help_examples_are_the_keys_of_the_shipped_sample():
    """The examples were not made up: they are where the sample lands with the default settings."""
    s = sample()
    ev = parse_event(s, 0)
    p = (murmur2(s["execution_id"].encode()) & 0x7FFFFFFF) % DEFAULT_PARTITIONS  # ingest's key: the chain root
    ws = window_start(ev.timestamp_ms, DEFAULT_WINDOW_MS)
    assert f"'{s['execution_id']}'" in TABLE_HELP["chains"]
    for key in (f"{p}|flow:{s['flow_id']}|{ws}", f"{p}|chain:{s['flow_id']}|{ws}", f"{p}|pipeline|{ws}",
                f"{p}|org:{s['org_name']}|{month_start(ev.timestamp_ms)}", f"{p}|clock"):
        assert f"'{key}'" in TABLE_HELP["windows"], key
    assert f"'flow:{s['flow_id']}|{ws}'" in TABLE_HELP["sink"]
    for name, text in TABLE_HELP.items():
        assert re.search(r"Key: '[^']+'|Key: the", text), name
        assert table_help(name, "old") == text
    assert table_help("other", "old") == "old"
    assert set(TABLE_OWNER) == set(TABLE_HELP)
    assert TABLE_OWNER["sink"] is Owner.OUT and TABLE_OWNER["windows"] is Owner.RAW


def test_every_key_names_its_partition():
    assert partition_of("windows", "3|flow:632567|1712255400000", {}) == 3
    assert partition_of("windows", "3|clock", {"now": 1, "off": 2}) == 3
    assert partition_of("windows", "junk", {}) is None
    assert partition_of("chains", "326b7317", {"root": "326b7317", "p": 5}) == 5
    assert partition_of("chains", "326b7317", None) is None
    assert partition_of("sink", "flow:632567|1712255400000", {"op": 2, "parts": {}}) == 2
    assert partition_of("sink", "retries|1|1712255400000", {"n": 3, "op": 1}) == 1


WINDOWS = [(f"{p}|flow:{f}|{ws}", {"group": f"flow:{f}", "ws": ws}) for p in range(4) for f in ("1", "22")
           for ws in (1000, 2000)] + [(f"{p}|clock", {"now": 1, "off": 0}) for p in range(4)]


def test_local_listing_is_sorted_limited_and_only_of_owned_partitions():
    q = KeyQuery(prefix="1|flow:", limit=3)
    out = local_keys(WINDOWS, table="windows", partitions=[1, 2], query=q)
    assert out["partitions"] == [1, 2] and out["matched"] == 4
    assert [k["key"] for k in out["keys"]] == ["1|flow:1|1000", "1|flow:1|2000", "1|flow:22|1000"]
    assert all("value" not in k and k["partition"] == 1 for k in out["keys"])
    assert local_keys(WINDOWS, table="windows", partitions=[0], query=q)["matched"] == 0
    with_values = local_keys(WINDOWS, table="windows", partitions=[3], query=KeyQuery(prefix="3|clock", values=True))
    assert with_values["keys"] == [{"key": "3|clock", "partition": 3, "value": {"now": 1, "off": 0}}]
    contains = local_keys(WINDOWS, table="windows", partitions=[0, 1, 2, 3], query=KeyQuery(contains="|flow:22|"))
    assert contains["matched"] == 8 and {k["partition"] for k in contains["keys"]} == {0, 1, 2, 3}


def test_answers_merge_in_key_order_each_key_with_its_owner():
    q = KeyQuery(contains="|flow:1|", limit=5)
    a = Answer("http://a:1", [0, 2], local_keys(WINDOWS, table="windows", partitions=[0, 2], query=q))
    b = Answer("http://b:2", [1, 3], local_keys(WINDOWS, table="windows", partitions=[1, 3], query=q))
    down = Answer("http://c:3", [4], None, "refused")
    out = merged_keys([b, down, a], q)
    assert out["matched"] == 8 and out["truncated"] is True
    assert [k["key"] for k in out["keys"]] == ["0|flow:1|1000", "0|flow:1|2000", "1|flow:1|1000", "1|flow:1|2000",
                                               "2|flow:1|1000"]
    assert [k["owner"] for k in out["keys"]] == ["http://a:1"] * 2 + ["http://b:2"] * 2 + ["http://a:1"]


def test_query_parameters():
    q = KeyQuery.from_params({"prefix": "3|flow:", "limit": "10", "values": "true", "contains": "x"})
    assert q == KeyQuery(prefix="3|flow:", contains="x", limit=10, values=True)
    assert KeyQuery.from_params(q.params()) == q
    assert KeyQuery.from_params({}) == KeyQuery()
    for bad in ("0", str(MAX_LIMIT + 1), "ten"):
        with pytest.raises(ValueError, match="limit"):
            KeyQuery.from_params({"limit": bad})


def test_a_listing_answer_is_checked_before_it_is_merged():
    good = local_keys(WINDOWS, table="windows", partitions=[0], query=KeyQuery())
    check_answer("http://a:1", good)
    for bad in ({"partitions": [0]}, {**good, "keys": [{"key": 1, "partition": 0}]}, {**good, "matched": "x"}):
        with pytest.raises((KeyError, ValueError, TypeError)):
            check_answer("http://a:1", bad)
