"""The module layout's promises: one-way imports, and no torch where none is needed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install 'embedkit[dev]')")
    result = subprocess.run([str(exe)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:]


def test_architecture_diagram_matches_the_import_graph():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter ('embedkit[dev]')")
    graph = grimp.build_graph("embedkit")
    packages = {m.split(".")[1] for m in graph.modules if m.count(".") >= 1} - {"__main__"}
    imports = {
        (a, b)
        for a in packages
        for b in packages
        if a != b
        and graph.direct_import_exists(
            importer=f"embedkit.{a}", imported=f"embedkit.{b}", as_packages=True
        )
    }
    text = (REPO / "docs" / "architecture.md").read_text()
    (diagram,) = re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)  # one diagram
    drawn = set(re.findall(r"^\s*(\w+) --> (\w+)\s*$", diagram, flags=re.M))
    assert drawn == {(a, b) for a, b in imports if b != "errors"}, "update docs/architecture.md"
    assert not {b for a, b in imports if a == "errors"}  # errors imports nothing


@pytest.mark.parametrize(
    "module",
    [
        "embedkit.store",
        "embedkit.extract",
        "embedkit.heads",
        "embedkit.bench",
        "embedkit.audit",
        "embedkit.deploy",
        "embedkit.sklearn",
        "embedkit.cli",
        "embedkit.datasets",
        "embedkit.contract",
    ],
)
def test_imports_without_torch(module):
    # torch, transformers and ray behave as if not installed: importing them raises ImportError.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'ray'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"import {module}\n"
        "from embedkit.cli import build_parser; build_parser()\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_command_line_starts_without_the_heavy_libraries():
    """Every `embedkit` process builds the parser; each command imports what it needs."""
    code = (
        "import sys\n"
        "from embedkit.cli import build_parser; build_parser()\n"
        "heavy = ('scipy', 'sklearn', 'h5py', 'onnx', 'onnxruntime', 'skops', 'torch', 'ray')\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# Names that two packages may share because they are one concept; anything else is renamed.
SHARED_NAMES = {"__init__", "registry", "report", "export"}


def _modules():
    """Every module inside a package (sub-packages such as ``store/read/`` included)."""
    return [p for p in (REPO / "embedkit").rglob("*.py") if len(p.relative_to(REPO).parts) >= 3]


def test_no_two_packages_have_a_module_of_the_same_name():
    seen: dict[str, list[str]] = {}
    for path in _modules():
        seen.setdefault(path.stem, []).append(path.parent.name)
    twice = {name: pkgs for name, pkgs in seen.items() if len(pkgs) > 1}
    assert set(twice) <= SHARED_NAMES, twice


def test_no_import_cycles_inside_a_package():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter ('embedkit[dev]')")
    graph = grimp.build_graph("embedkit")
    modules = sorted(m for m in graph.modules if m.count(".") >= 2)
    cycles = {
        (a, b)
        for a in modules
        for b in modules
        if a < b
        and a.rsplit(".", 1)[0] == b.rsplit(".", 1)[0]  # modules of one package
        and graph.find_shortest_chain(importer=a, imported=b)
        and graph.find_shortest_chain(importer=b, imported=a)
    }
    assert not cycles


def test_no_private_names_imported_across_modules():
    import ast

    found = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("embedkit."):
                source = node.module.split(".")[-1]
                private = [a.name for a in node.names if re.fullmatch(r"_[^_].*", a.name)]
                if private and not source.startswith("_") and source not in ("heads",):
                    found.add((path.stem, source))
    assert not found


def test_tests_do_not_import_benchmarks():
    """Benchmarks measure; tests check behaviour. A helper both need lives in tests/."""
    import ast

    scripts = {p.stem for p in (REPO / "benchmarks").glob("*.py")} | {"benchmarks"}
    found = set()
    for path in (REPO / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if {n.split(".")[0] for n in names} & scripts:
                found.add(str(path.relative_to(REPO)))
    assert not found, found
