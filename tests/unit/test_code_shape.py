"""The code stays a place a newcomer can live in: short functions and modules, no closures rebinding state,
and imports that only run downwards (els → ingest/processor → common)."""

from __future__ import annotations

import ast

import pytest

from tests.helpers.paths import ROOT

PACKAGES = ("common", "ingest", "processor", "els")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
# who may import whom: a package never imports one above it
ALLOWED = {"common": {"common"}, "ingest": {"common", "ingest"}, "processor": {"common", "processor"},
           "els": {"common", "ingest", "processor", "els"}}


def sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path, ast.parse(path.read_text(), str(path))


@pytest.mark.parametrize("package", PACKAGES)
def test_functions_and_modules_are_short(package):
    long = []
    for pkg, path, tree in sources():
        if pkg != package:
            continue
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long, long


def test_no_nonlocal_in_the_processor():
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for pkg, path, tree in sources() if pkg == "processor"
             for node in ast.walk(tree) if isinstance(node, ast.Nonlocal)]
    assert not found, found


def test_imports_only_run_downwards():
    wrong = []
    for pkg, path, tree in sources():
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top not in ALLOWED[pkg]:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not wrong, wrong
