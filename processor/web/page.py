"""The status page's HTML: one self-contained static file, status.html beside this module (inline CSS and JS, no
external assets; hosts may be offline), read once at import.

It polls /els/status.json every few seconds and draws the partitions, the flows table and sparklines in the
browser; the numbers themselves are computed by processor/web/status.py. Rows carry data-* attributes with the raw
values so a test (or a script) can read them without parsing formatted text. The file ships as package data
(pyproject.toml), so a non-editable install (the Dockerfile's `pip install .`) has it.
"""

from pathlib import Path

PAGE_FILE = Path(__file__).with_name("status.html")
PAGE = PAGE_FILE.read_text(encoding="utf-8")
