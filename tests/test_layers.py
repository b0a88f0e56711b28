"""The layers of the house, checked by import-linter on the package as it is installed.

pyproject.toml maps the stage folders (converters/, quantization/, lut_baking/) into the one
``edgesr`` namespace. import-linter (through grimp) only walks a package's own folder, so the
test lays the package out as a wheel would (the mapping applied) and runs the ``layers``
contract of ``[tool.importlinter]`` there. Imports inside functions count too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _installed_layout(dest: Path) -> Path:
    """Copy every mapped package folder to where the wheel puts it; returns the site folder."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in setuptools["package-dir"].items():
        target = dest.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if n == "__pycache__" or n.endswith((".so", ".c", ".h"))])
    return dest


def test_every_mapped_package_is_listed():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            sub = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in sub:
                assert ".".join([package, *sub]) in listed, f"{init} is not shipped: add it to [tool.setuptools] packages"


def test_lower_layers_never_import_higher_ones(tmp_path):
    site = _installed_layout(tmp_path / "site")
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True))")
    done = subprocess.run([sys.executable, "-c", code], cwd=site, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout, done.stdout
