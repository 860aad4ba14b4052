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
Mappings (YAML files, node parameters, CLI flags) into validated config dataclasses.

Every config in the package (model, training, localizer, node parameters) is a dataclass built
from a mapping a user wrote. A typo must not fall back silently to a default, so every one of
them goes through :func:`from_mapping`, which names the unknown keys and the valid ones.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, TypeVar

from jzi_ros.errors import JziError

T = TypeVar("T")


def reject_unknown(given: Iterable[str], allowed: Iterable[str], what: str,
                   noun: str = "key") -> None:
    """Raise a JziError naming ``what``, the unknown keys and the allowed ones, if any."""
    allowed = set(allowed)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise JziError(f"{what}: unknown {noun}(s) {unknown}; expected some of "
                       f"{sorted(allowed)}")


def from_mapping(cls: type[T], data: Any, what: str) -> T:
    """
    Build dataclass ``cls`` from ``data``; errors name ``what`` (file or section) and the key.

    Missing keys take the dataclass defaults; the dataclass' own ``__post_init__`` checks the
    values.
    """
    if not isinstance(data, Mapping):
        raise JziError(f"{what}: expected a mapping, got {type(data).__name__}")
    reject_unknown(data, (f.name for f in dataclasses.fields(cls)), what)
    try:
        return cls(**data)
    except TypeError as err:
        raise JziError(f"{what}: {err}") from None
