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


"""The thread setting: validated, applied to torch now or, before torch starts, through the env."""
import sys

import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.threads import check_threads, DEFAULT_THREADS, set_threads


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_check_threads_names_the_setting(bad):
    with pytest.raises((JziError, TypeError), match="node.threads|int"):
        check_threads(bad, "node.threads")


def test_set_threads_limits_torch_and_zero_leaves_it():
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1 == DEFAULT_THREADS
        set_threads(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_before_torch_starts_the_environment_carries_it(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delitem(sys.modules, "torch")
    set_threads(3)
    import os
    assert os.environ["OMP_NUM_THREADS"] == "3"
