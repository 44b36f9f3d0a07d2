"""Reading the README and docs/*.md: their sections, ```sh blocks, commands and links, and which commands the
documentation test (tests/cli/test_readme.py) runs, when, or why not.

A page's sections are split at its `## ` and `### ` headings; a section is named by its page and the start of its
heading. Every ```sh block of every page is in a section that the documentation test runs (RUN) or in one listed
with the reason it is not run (NOT_RUN); tests/unit/test_docs_links.py keeps it so, so a command added to the
documentation is run, or its section says why not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# a line with a placeholder (`<...>`, `...`, `[--option]`, `$VARIABLE`, example.com) is a template, not run
TEMPLATE = re.compile(r"<[A-Za-z][^<>\n]*>|\.\.\.|\[--|\$[A-Za-z_]|example\.com")

# the sections whose commands run, in this order: "by hand" in three terminals on a clean copy; then, against
# `make up` (the README's quick start), the others
BY_HAND = [("docs/running.md", "Run it by hand")]
QUICK_START = ("README.md", "Quick start")
AGAINST_MAKE_UP = [
    ("docs/inspecting.md", "Simulated traffic"),
    ("docs/inspecting.md", "Web routes"),
    ("docs/inspecting.md", "Reading the tables"),
    ("docs/troubleshooting.md", "Okta test send answers 401"),
    ("docs/troubleshooting.md", "No events arrive"),
    ("docs/troubleshooting.md", "Late events not counted"),
    ("docs/troubleshooting.md", "A red partition on the status page"),
    ("docs/troubleshooting.md", "The worker is not ready"),
    ("docs/troubleshooting.md", "The backlog grows"),
    ("docs/troubleshooting.md", "DRY RUN banner"),
    ("docs/troubleshooting.md", "Port already in use"),
    ("docs/inspecting.md", "Replay (backfill)"),
    ("docs/datadog.md", "Dashboards and monitors"),
]
RUN = [*BY_HAND, QUICK_START, *AGAINST_MAKE_UP]

NOT_RUN = {
    ("docs/running.md", "Run with Docker"): "needs a Docker engine; tests/deploy/test_compose.py validates "
                                            "docker-compose.yml, and `make up` is run without Docker",
    ("docs/running.md", "Run on your Kafka and Datadog"): "needs your Kafka cluster and a Datadog API key",
    ("docs/running.md", "HTTPS"): "needs a certificate for a public name; tests/e2e/test_ingest_https.py runs "
                                  "ingest on HTTPS, SIGHUP renewal included",
    ("docs/running.md", "Kafka security"): "needs a managed Kafka; tests/e2e/test_apache_kafka_security.py and "
                                           "test_kafka_tls.py run the same settings",
    ("docs/running.md", "Run on Kubernetes"): "needs a registry and a cluster; tests/deploy/test_kubernetes.py "
                                              "validates the manifests",
}
# single commands of run sections that are not run, and why
NOT_RUN_COMMANDS = {
    "make test": "the test suite itself (this test is part of it)",
}


@dataclass
class Command:
    text: str  # as written, continuation lines joined
    terminal: bool  # `# terminal N`: runs in its own terminal until stopped
    expect: str | None = None  # the `# -> ...` line under it

    @property
    def template(self) -> bool:
        return bool(TEMPLATE.search(self.text.split(" #")[0]))

    @property
    def not_run(self) -> str | None:
        head = self.text.split(" #")[0].strip()
        return NOT_RUN_COMMANDS.get(head)


def pages() -> list[str]:
    return ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


def text(page: str) -> str:
    return (ROOT / page).read_text()


def _without_fences(md: str) -> str:
    """The page with its fenced blocks blanked (a `# comment` in a block is no heading)."""
    return re.sub(r"^```.*?^```", lambda m: re.sub(r"[^\n]", " ", m.group(0)), md, flags=re.MULTILINE | re.DOTALL)


def sections(page: str) -> list[tuple[str, str]]:
    """(heading, body) of each `## ` / `### ` section, the part before the first one as heading ""."""
    md = text(page)
    plain = _without_fences(md)
    starts = [(m.start(), m.group(2)) for m in re.finditer(r"^(##|###) (.+)$", plain, flags=re.MULTILINE)]
    out = [("", md[: starts[0][0] if starts else len(md)])]
    for i, (at, heading) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(md)
        out.append((heading.strip(), md[at:end]))
    return out


def sh_blocks(body: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL)


def section(page: str, heading: str) -> str:
    found = [body for h, body in sections(page) if h.startswith(heading)]
    assert len(found) == 1, f"{page}: no single section '{heading}...' ({len(found)} found)"
    return found[0]


def commands(block: str) -> list[Command]:
    out: list[Command] = []
    pending = ""
    for line in block.splitlines():
        if pending:
            line, pending = pending + "\n" + line, ""
        if line.rstrip().endswith("\\"):
            pending = line
        elif m := re.match(r"\s*# -> (.*)", line):
            out[-1].expect = m.group(1)
        elif line.strip() and not line.lstrip().startswith("#"):
            out.append(Command(line, terminal=bool(re.search(r"#\s*terminal \d", line))))
    return out


def section_commands(page: str, heading: str) -> list[Command]:
    return [c for block in sh_blocks(section(page, heading)) for c in commands(block)]


def runnable(page: str, heading: str) -> list[Command]:
    """What the documentation test runs of a section: its commands, without templates and NOT_RUN_COMMANDS."""
    return [c for c in section_commands(page, heading) if not c.template and c.not_run is None]


# -- links and anchors ----------------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"<[^>]+>", "", heading).replace("`", "").strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(page: str) -> set[str]:
    plain = _without_fences(text(page))
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6} (.+)$", plain, flags=re.MULTILINE):
        s = slug(m.group(1))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    out |= set(re.findall(r'<a id="([^"]+)"', plain))
    return out


def links(page: str) -> list[str]:
    """The targets of the page's markdown links, outside code."""
    plain = re.sub(r"`[^`\n]*`", "", _without_fences(text(page)))
    return re.findall(r"\]\(([^)\s]+)\)", plain)
