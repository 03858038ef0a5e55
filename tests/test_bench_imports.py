"""The benchmark scripts import radserve's public faces only, like any other user of the package.

``bench/`` is not a package, so the import contracts in ``.importlinter`` do not see it; this
test holds it to the same rule: ``radserve.X`` or ``radserve.X.Y`` is imported only where that
module is a package (an ``__init__.py``, its public face), never a module inside one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH_SCRIPTS = sorted((ROOT / "bench").glob("*.py"))


def _radserve_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("radserve.")
            and " " not in node.value
        ):  # mock.patch targets and the like name modules in strings
            names.append(node.value.rsplit(".", 1)[0])
    return [n for n in names if n == "radserve" or n.startswith("radserve.")]


def _is_package(module: str) -> bool:
    return (ROOT / Path(*module.split(".")) / "__init__.py").is_file()


def test_bench_scripts_exist() -> None:
    assert len(BENCH_SCRIPTS) >= 4


@pytest.mark.parametrize("script", BENCH_SCRIPTS, ids=lambda p: p.name)
def test_bench_imports_only_public_faces(script: Path) -> None:
    internal = [m for m in _radserve_imports(script) if not _is_package(m)]
    allowed_patches = {"radserve.dicom_io.reading.pixel_stack"}  # the serial-decode baseline
    assert [m for m in internal if m not in allowed_patches] == []


def test_the_check_sees_an_internal_import(tmp_path: Path) -> None:
    script = tmp_path / "x.py"
    script.write_text("from radserve.dicom_io.reading.instances import read_instance\n")
    assert [m for m in _radserve_imports(script) if not _is_package(m)] == [
        "radserve.dicom_io.reading.instances"
    ]
