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
A map's georeferencing 1-sigma: how far its imagery's absolute position may be off.

``georef_sigma_m`` is that error per horizontal axis, in metres (1-sigma; e.g. 6 m CE95 is
6 / 2.45 = 2.45 m). Every fix registered against the imagery shares it, so refinement, the
classical baseline and the temporal filter add it to their covariance, all through
:func:`georef_sigma_used`. The map keeps it in its manifest (``jzi_ros/maps/pyramid.py``,
``jzi map build --georef-sigma-m``, ``jzi map set``).
"""
from __future__ import annotations

import math
from typing import Any

from jzi_ros.errors import JziError


def check_georef_sigma_m(value, where: str) -> float | None:
    """
    Return a georeferencing 1-sigma as a float (None stays None: unknown).

    JziError naming ``where`` (the file/option/field) unless it is a finite number >= 0.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise JziError(f"{where}: georef_sigma_m = {value!r} must be a finite number of "
                       "metres >= 0 (the imagery's horizontal georeferencing 1-sigma; 0 for a "
                       "perfectly georeferenced map)")
    return float(value)


def georef_sigma_used(pyramid: Any, override: float | None = None) -> float:
    """
    Return the georeferencing 1-sigma a run uses: ``override``, else the map's, else 0.

    The one rule for every user (refinement, the classical baseline, the temporal filter), so
    the refined fixes a filter fuses and the fixes it publishes carry the same value. A map
    that does not know its value, or none at hand (``pyramid`` None), counts as 0.
    ``pyramid``: a :class:`~jzi_ros.maps.pyramid.MapPyramid` or None.
    """
    if override is not None:
        return float(override)
    return (None if pyramid is None else pyramid.georef_sigma_m) or 0.0
