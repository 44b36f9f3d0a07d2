"""docs/configuration.md is what `python -m els.settings_doc` prints from the settings table, and names every
setting that `els <cmd> --help` shows."""

from __future__ import annotations

from common.config import SETTINGS
from els import settings_doc
from tests.unit.docs_pages import ROOT


def test_configuration_page_equals_the_generated_one():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == settings_doc.render(), (
        "docs/configuration.md differs from the settings table: run "
        f"`.venv/bin/{settings_doc.COMMAND}`")


def test_every_setting_has_its_row():
    rendered = settings_doc.render()
    for s in SETTINGS:
        assert f"\n| {s.env} | " in rendered
