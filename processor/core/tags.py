"""Datadog tag rules: how names and values are normalised, and the counter keys built from them.

Counter keys are "<metric>|<k>:<v>,<k>:<v>" (tags sorted by key, values already Datadog-normalised), or just
"<metric>" without tags; names starting with "_" are internal (inputs of gauges) and never rendered as such.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_TAG_CHARS = 200

_ASCII_BAD = re.compile(r"[^a-z0-9_\-:./]")
_UNDERSCORES = re.compile(r"__+")
_ALLOWED_ASCII = frozenset("0123456789_-:./")


@lru_cache(maxsize=16384)
def _normalise(s) -> str:
    s = str(s).lower()
    if s.isascii():
        s = _ASCII_BAD.sub("_", s)
    else:
        s = "".join(c if c.isalpha() or c in _ALLOWED_ASCII else "_" for c in s)
    s = _UNDERSCORES.sub("_", s).lstrip("_").rstrip("_:")
    if len(s) > MAX_TAG_CHARS:
        s = s[:MAX_TAG_CHARS].rstrip("_:")
    return s


def tag_value(s) -> str:
    """A tag value as Datadog keeps it, so what the pipeline sends is what users see and group by.

    Datadog's tag rules (docs "Getting Started with Tags" > "Define tags", and the agent's NormalizeTag): tags are
    lower-cased; they may contain Unicode letters, ASCII digits, '_', '-', ':', '.', '/'; any other character
    (space, comma, quote, emoji, ...) becomes '_'; runs of '_' collapse to one and trailing ones are dropped; a
    tag cannot end with ':'; a tag is at most 200 characters. Here, for a value: the same, plus leading '_'
    dropped and an empty result sent as "none" (an empty value would make the tag "key:", which Datadog does
    not keep). "2. Simple Helper flow " -> "2._simple_helper_flow". A fixed point:
    tag_value(tag_value(x)) == tag_value(x). The 200-character limit of the whole "key:value" tag is applied
    when rendering (see render_series).
    """
    return _normalise(s) or "none"


def _tag_key(s: str) -> str:
    """A tag key: normalised like a value, and starting with a letter (a tag's first character must be one)."""
    k = _normalise(s)
    i = 0
    while i < len(k) and not k[i].isalpha():
        i += 1
    return k[i:]


def cap(tag: str) -> str:
    return tag if len(tag) <= MAX_TAG_CHARS else tag[:MAX_TAG_CHARS].rstrip("_:")


def parse_dd_tags(s: str | None) -> list[str]:
    """DD_TAGS, agent style: items separated by commas and/or whitespace ("env:prod,team:iam",
    "env:prod team:iam"); each "key:value" (split at the first ':') or a bare "key". Keys and values are
    normalised (tag_value; keys must start with a letter, leading other characters are dropped); an item whose
    key is empty is skipped, "key:" becomes "key"; duplicates are dropped, order kept."""
    out: list[str] = []
    for item in re.split(r"[,\s]+", s or ""):
        k, sep, v = item.partition(":")
        key = _tag_key(k)
        if not key:
            continue
        tag = cap(f"{key}:{tag_value(v)}") if sep and v.strip() else key
        if tag not in out:
            out.append(tag)
    return out


_KEYS: dict[tuple, str] = {}
_KEYS_MAX = 100_000


def counter_key(metric: str, tags: tuple = ()) -> str:
    """"<metric>|<k>:<v>,..." for (metric, ((k, v), ...)), tags sorted by key, values normalised; cached."""
    ck = (metric, tags)
    key = _KEYS.get(ck)
    if key is None:
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        key = (metric + "|" + ",".join(f"{k}:{tag_value(v)}" for k, v in sorted(tags, key=lambda t: t[0]))
               if tags else metric)
        _KEYS[ck] = key
    return key


def split_key(key: str) -> tuple[str, list[str]]:
    """"<metric>|<k>:<v>,..." -> (metric, ["k:v", ...])."""
    metric, _, tags = key.partition("|")
    return metric, (tags.split(",") if tags else [])
