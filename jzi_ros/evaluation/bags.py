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
Reading ROS 2 bags (sqlite3 and mcap) with ``rosbags``: no ROS installation needed.

Replay wants camera frames in header-stamp order, but bags store messages in record (log) time
order and the two can disagree (driver buffering, several publishers). :func:`scan_frames` reads
every header stamp once (cheap: no image is decoded); :func:`iter_frames` then streams the bag a
second time and hands out the selected frames in stamp order, holding back only the messages
that arrived before an earlier-stamped one. Nothing ever holds the whole bag in memory.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping

import numpy as np
import yaml

from jzi_ros.errors import JziError

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
NAVSATFIX_TYPE = "sensor_msgs/msg/NavSatFix"
STORAGES = ("sqlite3", "mcap")


def stamp_ns(msg: Any) -> int:
    """``header.stamp`` of a message as integer nanoseconds."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@contextlib.contextmanager
def open_bag(path: str | Path) -> Iterator[Any]:
    """
    Open a ``rosbags.highlevel.AnyReader`` on a bag directory, .db3 or .mcap file.

    Any failure to open becomes one JziError naming the bag: the reader raises a zoo of
    exception types (yaml, sqlite, mcap, KeyError on odd metadata) for the same user problem.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    path = Path(path)
    if not path.exists():
        raise JziError(f"bag {path} does not exist")
    try:
        # Humble's sqlite3 bags carry no message definitions; the standard store fills in.
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as err:  # noqa: BLE001 - see docstring
        raise JziError(f"bag {path} cannot be read ({type(err).__name__}: {err}); expected a "
                       "ROS 2 bag directory with metadata.yaml, or a .db3 / .mcap file") from None
    try:
        yield reader
    finally:
        reader.close()


def bag_storage(path: str | Path) -> str:
    """'sqlite3' or 'mcap': the storage plugin of a bag (directory or single file)."""
    path = Path(path)
    if path.is_file():
        suffix = {".db3": "sqlite3", ".mcap": "mcap"}.get(path.suffix)
        if suffix is None:
            raise JziError(f"bag {path}: unknown storage for suffix {path.suffix!r} "
                           "(expected .db3 or .mcap)")
        return suffix
    try:
        meta = yaml.safe_load((path / "metadata.yaml").read_text())
        storage = meta["rosbag2_bagfile_information"]["storage_identifier"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise JziError(f"bag {path}: cannot read the storage identifier from metadata.yaml "
                       f"({err})") from None
    if storage not in STORAGES:
        raise JziError(f"bag {path}: storage {storage!r} is not supported "
                       f"(expected one of {', '.join(STORAGES)})")
    return storage


def describe_topics(reader: Any) -> str:
    """Describe the topics for error messages: '/a (sensor_msgs/msg/Image, 10 msgs), /b (...)'."""
    topics = reader.topics
    if not topics:
        return "no topics at all"
    return ", ".join(f"{name} ({info.msgtype}, {info.msgcount} msgs)"
                     for name, info in sorted(topics.items()))


def require_topic(reader: Any, bag: Path, topic: str, types: Collection[str], role: str,
                  option: str) -> str:
    """
    Return the message type of ``topic``.

    JziError (listing the bag's topics) if it is missing, empty, or of a type not in ``types``.
    """
    info = reader.topics.get(topic)
    if info is None:
        raise JziError(f"bag {bag}: no topic {topic!r} for the {role} ({option}); "
                       f"the bag has: {describe_topics(reader)}")
    if info.msgtype not in types:
        raise JziError(f"bag {bag}: topic {topic} ({option}) has type {info.msgtype}, expected "
                       f"{' or '.join(types)}; the bag has: {describe_topics(reader)}")
    if info.msgcount == 0:
        raise JziError(f"bag {bag}: topic {topic} ({option}) has no messages")
    return info.msgtype


def iter_topic(reader: Any, bag: Path, topic: str) -> Iterator[tuple[int, int, bytes, str]]:
    """
    (ordinal, log_time_ns, raw bytes, msgtype) of every message on ``topic`` in bag order.

    A storage error mid-way (truncated file) ends the replay with a JziError; a single corrupt
    *message* is the caller's business (it deserializes and counts).
    """
    connections = [c for c in reader.connections if c.topic == topic]
    ordinal = 0
    messages = reader.messages(connections=connections)
    while True:
        try:
            connection, log_time, raw = next(messages)
        except StopIteration:
            return
        except Exception as err:  # noqa: BLE001 - storage backends raise assorted errors
            raise JziError(f"bag {bag}: reading {topic} failed after {ordinal} messages "
                           f"({type(err).__name__}: {err}); the bag file looks damaged") from None
        yield ordinal, int(log_time), raw, connection.msgtype
        ordinal += 1


def deserialize(reader: Any, raw: bytes, msgtype: str) -> Any:
    """
    Return a message, or raise ValueError with the deserializer's complaint.

    The CDR decoder fails with assorted exception types (struct.error, IndexError, its own
    errors) on malformed bytes; callers count such a message as corrupt and move on.
    """
    try:
        return reader.deserialize(raw, msgtype)
    except Exception as err:  # noqa: BLE001 - see docstring
        raise ValueError(f"{type(err).__name__}: {err}") from None


def iter_messages(reader: Any, bag: Path, topic: str) -> Iterator[Any]:
    """Deserialized messages on ``topic`` in bag order; corrupt ones are skipped."""
    for _, _, raw, msgtype in iter_topic(reader, bag, topic):
        try:
            yield deserialize(reader, raw, msgtype)
        except ValueError:
            continue


@dataclass(frozen=True)
class FrameScan:
    """
    Header stamps of every message on an image topic (pass 1 of a replay).

    ``stamps_ns[i]`` belongs to the i-th message in bag order; a message whose header cannot be
    decoded gets its log time instead and ``stamp_ok[i]`` False (it is still a frame: pass 2
    reports it as corrupt in its place in time).
    """

    msgtype: str
    stamps_ns: np.ndarray  # int64 [N]
    log_times_ns: np.ndarray  # int64 [N]
    stamp_ok: np.ndarray  # bool [N]
    from_log_time: int  # messages with an all-zero header stamp, placed by log time

    @property
    def count(self) -> int:
        return int(self.stamps_ns.size)


def scan_frames(reader: Any, bag: Path, topic: str, msgtype: str) -> FrameScan:
    """Pass 1: the header stamp of every image message, without decoding any image."""
    stamps, log_times, ok = [], [], []
    zero = 0
    for _, log_time, raw, _ in iter_topic(reader, bag, topic):
        log_times.append(log_time)
        try:
            stamp = stamp_ns(deserialize(reader, raw, msgtype))
            good = True
        except (ValueError, AttributeError):
            stamp, good = log_time, False
        if good and stamp == 0:
            # Some drivers never set the stamp; record time is the best remaining clock.
            stamp, zero = log_time, zero + 1
        stamps.append(stamp)
        ok.append(good)
    return FrameScan(msgtype, np.asarray(stamps, np.int64), np.asarray(log_times, np.int64),
                     np.asarray(ok, bool), zero)


def select_frames(scan: FrameScan, every: int = 1, start_s: float = 0.0,
                  duration_s: float | None = None, limit: int | None = None) -> np.ndarray:
    """
    Ordinals (bag order) of the frames to replay, sorted by header stamp.

    ``start_s``/``duration_s`` are seconds after the first image stamp; ``every`` keeps every
    N-th frame of that window; ``limit`` caps the count. Ties in stamp keep bag order.
    """
    if scan.count == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((np.arange(scan.count), scan.stamps_ns))
    stamps = scan.stamps_ns[order]
    begin = int(stamps[0]) + int(round(start_s * 1e9))
    keep = stamps >= begin
    if duration_s is not None:
        keep &= stamps < begin + int(round(duration_s * 1e9))
    order = order[keep][::max(1, int(every))]
    if limit is not None:
        order = order[:max(0, int(limit))]
    return order.astype(np.int64)


def iter_frames(reader: Any, bag: Path, topic: str, selected: np.ndarray
                ) -> Iterator[tuple[int, int, bytes]]:
    """
    Pass 2: (ordinal, log_time_ns, raw) of the ``selected`` ordinals, in that order.

    ``selected`` is stamp order; the bag is read in log order, so a message that arrives before
    its turn waits in ``pending`` until every earlier-stamped frame has been handed out.
    """
    rank_of: Mapping[int, int] = {int(o): r for r, o in enumerate(selected)}
    pending: dict[int, tuple[int, int, bytes]] = {}
    next_rank = 0
    last = int(selected.max()) if selected.size else -1
    for ordinal, log_time, raw, _ in iter_topic(reader, bag, topic):
        rank = rank_of.get(ordinal)
        if rank is not None:
            pending[rank] = (ordinal, log_time, raw)
            while next_rank in pending:
                yield pending.pop(next_rank)
                next_rank += 1
        if ordinal >= last and not pending:
            return
