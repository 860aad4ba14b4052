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

ament_copyright_main = pytest.importorskip(
    "ament_copyright.main", reason="ament_copyright not installed (ROS 2 only)").main

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    # the package root: every source file, plus LICENSE and CONTRIBUTING.md at a repository root
    rc = ament_copyright_main(argv=[str(PACKAGE_ROOT)])
    assert rc == 0, "Found errors"
