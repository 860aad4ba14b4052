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
``--write-bag``: a copy of the input bag plus the localizer's fixes as NavSatFix messages.

Every input message is copied byte for byte with its connection (type definition, QoS) and
record time. Each localized frame adds one ``/jzi/fix`` message whose header stamp is the
image's header stamp (what robot_localization needs to place the fix in time) and whose record
time is the image's record time, so ``ros2 bag play`` emits the fix right after its image.
Version 8 by default: Humble's ``ros2 bag`` cannot open version 9 bags.
"""
from __future__ import annotations

from dataclasses import dataclass
import heapq
import os
from pathlib import Path
from typing import Any, Iterator

from jzi_ros.errors import JziError
from jzi_ros.evaluation.bags import bag_storage, NAVSATFIX_TYPE, open_bag, STORAGES
from jzi_ros.evaluation.replay import ReplayResult
from jzi_ros.files import atomic_directory, refuse_overlap
from jzi_ros.inference.messages import fix_to_navsatfix, rosbags_message_types

BAG_VERSIONS = (8, 9)
DEFAULT_FIX_TOPIC = "/jzi/fix"


@dataclass
class BagOutputOptions:
    """How the output bag is written."""

    version: int = 8  # 8 opens in Humble's ros2 bag, 9 needs Jazzy or newer
    storage: str = "auto"  # "auto" = same as the input bag, or "sqlite3" / "mcap"
    topic: str = DEFAULT_FIX_TOPIC
    frame_id: str | None = None  # None: the image's header.frame_id

    def validate(self) -> None:
        if self.version not in BAG_VERSIONS:
            raise JziError(f"--bag-version: got {self.version}, expected 8 (Humble) or 9")
        if self.storage not in ("auto",) + STORAGES:
            raise JziError(f"--bag-storage: got {self.storage!r}, expected auto, sqlite3 or "
                           "mcap")
        if not self.topic.startswith("/"):
            raise JziError(f"fix topic {self.topic!r} must be absolute (start with '/')")


def _fix_messages(result: ReplayResult, options: BagOutputOptions, typestore: Any
                  ) -> list[tuple[int, int, bytes]]:
    """(log_time, sequence, serialized NavSatFix) of every localized frame, in log order."""
    types = rosbags_message_types(typestore)
    out = []
    for seq, record in enumerate(result.localized):
        frame_id = record.frame_id if options.frame_id is None else options.frame_id
        # the fix's covariance as the Localizer floored it (LocalizerConfig.sigma_floor_m)
        msg = fix_to_navsatfix(record.fix, record.stamp_ns, frame_id, types)
        out.append((record.log_time_ns, seq, bytes(typestore.serialize_cdr(msg, NAVSATFIX_TYPE))))
    out.sort()
    return out


def _merged(reader: Any, fixes: list[tuple[int, int, bytes]]
            ) -> Iterator[tuple[Any, int, bytes]]:
    """
    Input messages and fixes merged by record time (None connection = a fix).

    A fix follows its image (an input message with the same time sorts first).
    """
    inputs = ((t, 0, i, conn, raw) for i, (conn, t, raw) in enumerate(reader.messages()))
    extra = ((t, 1, seq, None, raw) for t, seq, raw in fixes)
    for t, _, _, conn, raw in heapq.merge(inputs, extra, key=lambda m: m[:3]):
        yield conn, t, raw


def write_fix_bag(result: ReplayResult, out: str | Path, options: BagOutputOptions | None = None,
                  overwrite: bool = False) -> Path:
    """Write the output bag directory ``out`` atomically and return its path."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores

    options = options or BagOutputOptions()
    options.validate()
    out = Path(out)
    refuse_overlap(out, result.bag, "--write-bag", "input bag")
    storage = bag_storage(result.bag) if options.storage == "auto" else options.storage
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    typestore = get_typestore(Stores.ROS2_HUMBLE if options.version == 8 else Stores.ROS2_JAZZY)
    fixes = _fix_messages(result, options, typestore)
    with open_bag(result.bag) as reader:
        if not reader.is2:
            raise JziError(f"bag {result.bag} is a ROS 1 bag; --write-bag copies ROS 2 bags "
                           "only (convert it first, e.g. `rosbags-convert`)")
        if options.topic in reader.topics:
            raise JziError(f"bag {result.bag} already has a topic {options.topic}; choose "
                           "another output topic")
        with atomic_directory(out, overwrite=overwrite) as tmp:
            # rosbags names the data file after the bag directory and refuses an existing
            # directory, so write into tmp/<name> and lift the files up into tmp.
            inner = tmp / out.name
            writer = Writer(inner, version=options.version, storage_plugin=plugin)
            writer.open()
            try:
                connections = {}
                for conn in reader.connections:
                    connections[conn.id] = _copy_connection(writer, conn, typestore)
                fix_conn = writer.add_connection(options.topic, NAVSATFIX_TYPE,
                                                 typestore=typestore)
                for conn, t, raw in _merged(reader, fixes):
                    writer.write(fix_conn if conn is None else connections[conn.id], t, raw)
            except BaseException:
                writer.abort()
                raise
            writer.close()
            for item in inner.iterdir():
                os.replace(item, tmp / item.name)
            inner.rmdir()
    return out


def _copy_connection(writer: Any, conn: Any, typestore: Any) -> Any:
    """
    Add the same topic/type/definition/QoS on the writer.

    The definition comes from the standard store when the input bag carries none, as Humble's
    sqlite3 bags do.
    """
    ext = conn.ext
    kwargs = {"serialization_format": getattr(ext, "serialization_format", "cdr"),
              "offered_qos_profiles": list(getattr(ext, "offered_qos_profiles", []))}
    if conn.msgdef.data and conn.digest:
        return writer.add_connection(conn.topic, conn.msgtype, msgdef=conn.msgdef.data,
                                     rihs01=conn.digest, **kwargs)
    if conn.msgtype not in typestore.types:
        raise JziError(f"bag {writer.path}: topic {conn.topic} has type {conn.msgtype} without "
                       "a message definition in the input bag; cannot copy it")
    return writer.add_connection(conn.topic, conn.msgtype, typestore=typestore, **kwargs)
