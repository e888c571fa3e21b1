"""Pages and UI helpers import what they use with plain import statements (issue 27, item 4), so an editor
and a reader can follow a page into its analysis: no importlib, no import_module/__import__ with a module
name in a string, and no page imports a command-line module (app/commands/); what a page shares with a
command lives outside app/commands (e.g. app/atlas_folders.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "app" / "views").glob("*.py"))
UI = sorted((ROOT / "app" / "ui").glob("*.py"))
DYNAMIC = ("importlib", "import_module(", "__import__(")


def _dynamic_imports(path: Path) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if any(word in line for word in DYNAMIC)]


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import statement, at any depth ('from a import b' counts as a and a.b)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_the_checks_see_the_pages_and_ui_modules():
    assert {p.name for p in PAGES} >= {"sinks.py", "extreme.py", "dormant.py", "successor.py", "circuits.py",
                                       "saes.py", "bblab.py", "compare.py", "model.py"}
    assert {p.name for p in UI} >= {"downloads.py", "prewarm.py", "model.py", "sidebar.py"}


def test_pages_and_ui_use_no_importlib_or_import_by_name():
    found = [hit for path in PAGES + UI for hit in _dynamic_imports(path)]
    assert not found, "import with a plain import statement instead:\n" + "\n".join(found)


def test_pages_import_no_command_line_module():
    found = [f"{path.relative_to(ROOT)}:{line}: {module}" for path in PAGES
             for line, module in _imported_modules(path)
             if module == "app.commands" or module.startswith("app.commands.")]
    assert not found, ("a page imports app/commands (the command line); move what it needs out of "
                       "app/commands and import it from there:\n" + "\n".join(found))
