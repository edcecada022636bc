"""The package's layout rules (README, Layout): every subpackage is installed, an underscore name is
private to its module, and the rooms depend on each other in one direction only."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pointmetrics"


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def relative_imports(tree):
    """(module level, module name, imported names) of every `from .x import ...` in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            yield node.level, node.module or "", [alias.name for alias in node.names]


def test_every_subpackage_is_installed():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert found <= listed, f"pyproject.toml [tool.setuptools] packages misses {sorted(found - listed)}"


def test_no_module_imports_another_modules_private_names():
    # Underscore modules (_checks, _ops, _reduce) are the package's shared infrastructure; inside
    # any module, an underscore name is that module's own.
    offences = []
    for path, tree in modules():
        for _, module, names in relative_imports(tree):
            if not module:  # `from . import _checks, io`: modules, not names inside one
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                offences.append(f"{path.relative_to(ROOT)}: from {module or '.'} import {', '.join(private)}")
    assert not offences, "\n".join(offences)


def test_protocols_and_metrics_do_not_import_the_command_line():
    for path, tree in modules():
        if "cli" in path.relative_to(PACKAGE).parts or path.name == "__main__.py":
            continue
        for _, module, _ in relative_imports(tree):
            assert not module.startswith("cli"), f"{path.relative_to(ROOT)} imports the command line ({module})"
