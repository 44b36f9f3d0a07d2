"""Listing a table's keys by prefix, across the cluster: what /els/keys/<table>/ answers.

Each worker lists the keys of the partitions it actively owns (`local_keys`); the view serving the request asks
every owner (processor/web/cluster.py) and merges the sorted lists (`merged_keys`), each key with its partition
and owner. A worker's table also holds standby copies of other partitions: those are not listed by it, so a
key appears once, from the worker that keeps it current.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from processor.web.cluster import Answer
from processor.web.tables import partition_of

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
TRUE = ("1", "true", "yes")


@dataclass(frozen=True)
class KeyQuery:
    """What to list: keys starting with `prefix` and containing `contains`, at most `limit`, with values or not."""

    prefix: str = ""
    contains: str = ""
    limit: int = DEFAULT_LIMIT
    values: bool = False

    @classmethod
    def from_params(cls, params) -> KeyQuery:
        """From a request's query parameters; raises ValueError with a message for the caller when malformed."""
        raw = params.get("limit", str(DEFAULT_LIMIT))
        try:
            limit = int(raw)
        except ValueError:
            raise ValueError(f"limit must be a whole number, got {raw!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        return cls(prefix=params.get("prefix", ""), contains=params.get("contains", ""), limit=limit,
                   values=params.get("values", "").lower() in TRUE)

    def params(self) -> dict[str, str]:
        out = {"prefix": self.prefix, "limit": str(self.limit)}
        if self.contains:
            out["contains"] = self.contains
        if self.values:
            out["values"] = "1"
        return out


def local_keys(items: Iterable[tuple[str, object]], *, table: str, partitions: list[int], query: KeyQuery) -> dict:
    """This worker's matching keys of `partitions`: {"partitions", "matched", "keys": the first `limit`, sorted}."""
    owned = set(partitions)
    found: list[tuple[str, int, object]] = []
    for key, value in items:
        if not isinstance(key, str) or not key.startswith(query.prefix) or query.contains not in key:
            continue
        p = partition_of(table, key, value)
        if p is not None and p in owned:
            found.append((key, p, value))
    found.sort(key=lambda f: f[0])
    keys = [{"key": k, "partition": p, **({"value": v} if query.values else {})} for k, p, v in found[:query.limit]]
    return {"partitions": sorted(owned), "matched": len(found), "keys": keys}


def check_answer(url: str, body: dict) -> None:
    """Raises unless `body` is a `local_keys` answer (see cluster.ask_owners' `accept`)."""
    int(body["matched"])
    for k in body["keys"]:
        if not (isinstance(k["key"], str) and isinstance(k["partition"], int)):
            raise ValueError(f"not a key: {k!r:.200}")


def merged_keys(answers: list[Answer], query: KeyQuery) -> dict:
    """The answers' keys merged in key order, each naming its owner; `matched` counts every match."""
    keys = []
    matched = 0
    for a in answers:
        if a.body is None:
            continue
        matched += int(a.body.get("matched", 0))
        keys += [{**k, "owner": a.url} for k in a.body.get("keys") or ()]
    keys.sort(key=lambda k: k["key"])
    return {"matched": matched, "truncated": matched > query.limit, "keys": keys[:query.limit]}
