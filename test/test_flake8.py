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

main_with_errors = pytest.importorskip(
    "ament_flake8.main", reason="ament_flake8 not installed (ROS 2 only)").main_with_errors

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    # Our setup.cfg [flake8]: ament's settings plus double quotes and our import names.
    rc, errors = main_with_errors(
        argv=["--config", str(PACKAGE_ROOT / "setup.cfg"), str(PACKAGE_ROOT)])
    assert rc == 0, "Found %d code style errors / warnings:\n" % len(errors) + "\n".join(errors)
