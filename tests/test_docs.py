"""The README documents every command and the two set-up commands; .ci/run runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .test_cli import all_commands

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text("utf-8")


@pytest.mark.parametrize("command", all_commands(), ids=" ".join)
def test_readme_mentions_every_command(command: tuple[str, ...]) -> None:
    """Each CLI command appears in the README as `lixiao <command>`."""
    assert f"lixiao {' '.join(command)}" in README


def test_ci_runs_the_readme_test_command() -> None:
    """The test command shown in the README is the one .ci/run executes."""
    match = re.search(r"<!-- test-command -->\n```sh\n(.+?)\n```", README)
    assert match, "README must show the test command in a marked block"
    assert match.group(1) in (ROOT / ".ci" / "run").read_text("utf-8")


def test_every_test_says_what_it_checks() -> None:
    """Every test function has a docstring stating the behaviour it checks (the house style)."""
    import ast

    missing = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and not ast.get_docstring(node):
                missing.append(f"{path.relative_to(ROOT)}::{node.name}")
    assert missing == []


def test_every_module_stays_under_400_lines() -> None:
    """Issue 15's size rule: no module of core/, workbooks/, sync/ or reports/ above 400 lines."""
    long = {str(p.relative_to(ROOT)): n for folder in ("core", "workbooks", "sync", "reports")
            for p in (ROOT / folder).rglob("*.py") if (n := len(p.read_text("utf-8").splitlines())) > 400}
    assert long == {}


def test_architecture_names_every_module() -> None:
    """docs/architecture.md lists every module of core/, workbooks/, sync/ and reports/ (it is drawn from the code)."""
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    missing = [f"{folder}/{p.name}" for folder in ("core", "workbooks", "sync", "reports")
               for p in sorted((ROOT / folder).rglob("*.py")) if p.name != "__init__.py" and p.name not in text
               and f"  {p.stem} " not in text]
    assert missing == []
