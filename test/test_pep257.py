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

from pathlib import Path

import pytest

ament_pep257_main = pytest.importorskip(
    "ament_pep257.main", reason="ament_pep257 not installed (ROS 2 only)").main

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# ament_pep257's default ("ament" convention) spelled out, so older and newer ament_pep257
# check the same thing as test/test_style.py does: every pydocstyle code except these.
IGNORE = ["D100", "D101", "D102", "D103", "D104", "D105", "D106", "D107", "D203", "D212", "D404"]


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    # paths first: --ignore takes every argument after it
    rc = ament_pep257_main(argv=[str(PACKAGE_ROOT), "--ignore", *IGNORE])
    assert rc == 0, "Found code style errors / warnings"
