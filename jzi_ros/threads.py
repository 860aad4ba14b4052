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
How many CPU threads torch and OpenCV may use: one setting for every command and the node.

torch starts as many intra-op threads as there are cores. On a robot those cores also run the
camera driver, the EKF and the planner; when one of them is busy, every torch op waits for its
slowest thread, and the encoder got many times slower than with a single thread (measured with
``jzi bench``; table in docs/benchmarks.md). The default is therefore 1 thread; 0 keeps the
libraries' own choice (all cores), which is faster only on an otherwise idle machine.
"""
from __future__ import annotations

import os
import sys

from jzi_ros.errors import JziError

# measured: `jzi bench --preset demo --backend torch --device cpu --threads 1|2`, idle and with
# one core busy (docs/benchmarks.md, "Threads")
DEFAULT_THREADS = 1


def check_threads(threads: int, what: str = "threads") -> int:
    """Return ``threads`` as an int, or raise a JziError naming ``what`` (0 = library default)."""
    if isinstance(threads, bool) or int(threads) != threads or threads < 0:
        raise JziError(f"{what} must be an integer >= 0 (0: all cores), got {threads!r}")
    return int(threads)


def set_threads(threads: int) -> None:
    """
    Limit torch's and OpenCV's CPU threads to ``threads`` (0: leave the libraries' choice).

    Before torch is imported this only sets ``OMP_NUM_THREADS``, which torch reads when it
    starts, so a command that never needs torch (``jzi map info``) does not pay its import.
    """
    threads = check_threads(threads)
    if threads == 0:
        return
    import cv2

    cv2.setNumThreads(threads)
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    elif torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
