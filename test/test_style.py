# Copyright 2026 jzi_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
The ament linters' checks, run without ROS 2 so CI keeps them green.

test_copyright.py, test_flake8.py and test_pep257.py only run where ament is installed
(``colcon test``). These run the same checks with plain tools: flake8 with our setup.cfg (the
plugins and settings ament_flake8 uses), pydocstyle the way ament_pep257 calls it, and the
Apache-2.0 header ament_copyright looks for.
"""
import importlib.util
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("jzi_ros", "test", "launch", "benchmarks", "tools", "setup.py")

# ament_flake8 loads these plugins; without one its codes would silently go unchecked.
FLAKE8_PLUGINS = ("flake8_builtins", "flake8_comprehensions", "flake8_docstrings",
                  "flake8_import_order", "flake8_quotes")
# ament_pep257's "ament" convention: every pydocstyle code except these (note: not pydocstyle's
# pep257 convention, so D213, D4xx section checks etc. apply).
AMENT_PEP257_IGNORE = ("D100", "D101", "D102", "D103", "D104", "D105", "D106", "D107",
                       "D203", "D212", "D404")

HEADER = """\
# Copyright {year} jzi_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""


def _missing(*modules: str) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def python_files() -> list[Path]:
    """List the .py files under PATHS, skipping folders that start with "." or "_" (as ament)."""
    files = []
    for name in PATHS:
        path = ROOT / name
        if path.is_file():
            files.append(path)
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d[0] not in "._")
            files.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    return files


def test_python_files_found():
    names = {p.relative_to(ROOT).as_posix() for p in python_files()}
    assert {"setup.py", "jzi_ros/__init__.py", "test/test_style.py"} <= names


def test_copyright_headers():
    header = re.compile(re.escape(HEADER).replace(r"\{year\}", r"\d{4}(?:-\d{4})?"))
    bad = []
    for path in python_files():
        text = path.read_text(encoding="utf-8")
        # ament_copyright skips a shebang and a coding line before the header
        lines = text.splitlines(keepends=True)
        while lines and (lines[0].startswith("#!") or
                         (lines[0].startswith("#") and "coding" in lines[0])):
            lines.pop(0)
        if not header.match("".join(lines).lstrip("\n")):
            bad.append(path.relative_to(ROOT).as_posix())
    assert not bad, ("missing the Apache-2.0 header (see any jzi_ros/*.py):\n" + "\n".join(bad))


def test_license_file():
    text = " ".join((ROOT / "LICENSE").read_text(encoding="utf-8").split())
    assert text.startswith("Apache License Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text
    assert "Apache 2 License" in (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")


@pytest.mark.slow  # flake8 over the whole tree
def test_flake8():
    missing = _missing("flake8", *FLAKE8_PLUGINS)
    if missing:
        pytest.skip("flake8 or its plugins not installed: " + ", ".join(missing)
                    + " (pip install -e .[test])")
    result = subprocess.run(
        [sys.executable, "-m", "flake8", "--config", str(ROOT / "setup.cfg"), *PATHS],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, (
        "flake8 findings (config: setup.cfg [flake8]):\n" + result.stdout + result.stderr)


def test_pep257(monkeypatch):
    missing = _missing("pydocstyle")
    if missing:
        pytest.skip("pydocstyle not installed (pip install -e .[test])")
    from pydocstyle import check
    from pydocstyle.config import ConfigurationParser
    from pydocstyle.violations import Error

    # As ament_pep257's generate_pep257_report: the options go through sys.argv, and check()
    # gets no property_decorators, so properties are held to D401 too (the pydocstyle CLI
    # would exempt them).
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [
        "main", "--match", r".*\.py", "--match-dir", r"[^\._].*",
        "--ignore", ",".join(AMENT_PEP257_IGNORE), *PATHS])
    conf = ConfigurationParser()
    conf.parse()
    findings = []
    for filename, checked_codes, ignore_decorators, *_ in conf.get_files_to_check():
        for error in check([filename], select=checked_codes,
                           ignore_decorators=ignore_decorators):
            if isinstance(error, Error):
                findings.append(f"{error.filename}:{error.line} {error.definition}: "
                                f"{error.message}")
            else:
                findings.append(f"{filename}: {error!r}")
    assert not findings, ("pydocstyle findings (ament_pep257 settings):\n"
                          + "\n".join(findings))
