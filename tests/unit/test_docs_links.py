"""The README and docs/*.md hold together: every relative link reaches a file, and its #anchor a heading; every
page says first what it is for; every ```sh block is run by the documentation test or says why not; no page
names a round of development or points at an issue number."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from tests.unit import docs_pages as d


@pytest.mark.parametrize("page", d.pages())
def test_every_relative_link_reaches_a_file_and_a_heading(page):
    broken = []
    for target in d.links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (d.ROOT / page).parent / unquote(path) if path else d.ROOT / page
        if not dest.exists():
            broken.append(f"{target}: no such file")
            continue
        if anchor:
            assert dest.suffix == ".md", f"{page}: {target}: an anchor into a file that is not a page"
            rel = dest.resolve().relative_to(d.ROOT).as_posix()
            if anchor not in d.anchors(rel):
                broken.append(f"{target}: no heading #{anchor} in {rel}")
    assert broken == [], f"{page}: {broken}"


def test_every_page_is_linked_from_the_readme():
    linked = {t.partition("#")[0] for t in d.links("README.md")}
    assert {p for p in d.pages() if p != "README.md"} <= linked


@pytest.mark.parametrize("page", [p for p in d.pages() if p != "README.md"])
def test_every_docs_page_starts_with_what_it_is_for(page):
    lines = d.text(page).splitlines()
    assert lines[0].startswith("# "), f"{page}: no title"
    first = next(line for line in lines[1:] if line.strip())
    assert first.startswith("This page "), f"{page}: the first sentence should say what the page is for: {first!r}"


def test_readme_is_short():
    assert len(d.text("README.md").splitlines()) <= 250


def test_every_sh_block_is_run_or_says_why_not():
    planned = set(d.RUN) | set(d.NOT_RUN)
    for page, heading in planned:
        d.section(page, heading)  # exists, once
    unplanned = []
    for page in d.pages():
        for heading, body in d.sections(page):
            if d.sh_blocks(body) and not any(p == page and heading.startswith(h) for p, h in planned):
                unplanned.append(f"{page}: '{heading}'")
    assert unplanned == [], ("sections with ```sh blocks that tests/cli/test_readme.py neither runs nor lists in "
                             f"docs_pages.NOT_RUN: {unplanned}")
    for page, heading in d.RUN:
        assert d.runnable(page, heading), f"{page} '{heading}': nothing left to run"


def test_the_first_run_commands_are_still_shown():
    texts = " | ".join(c.text for c in d.runnable(*d.BY_HAND[0]))
    for needed in ("make install", "els broker", "els ingest", "els process", "/v1/events", "/els/stats/"):
        assert needed in texts, f"'Run it by hand' no longer shows {needed!r}"
    assert [c.text for c in d.section_commands(*d.QUICK_START) if c.text.startswith("make up")]


def test_no_page_names_a_round_of_development_or_an_issue():
    for page in d.pages():
        for n, line in enumerate(d.text(page).splitlines(), 1):
            assert not re.search(r"session [0-9]", line, re.IGNORECASE), f"{page}:{n}: {line}"
            assert not re.search(r"\bissues? #?[0-9]", line, re.IGNORECASE), f"{page}:{n}: {line}"
