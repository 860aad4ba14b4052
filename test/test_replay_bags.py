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

"""Bag reading: sqlite3 and mcap, header-stamp order, frame selection, clear errors."""
import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.evaluation.bags import (bag_storage, IMAGE_TYPES, iter_frames, open_bag,
                                     require_topic, scan_frames, select_frames)
from replay_support import BagSpec, code_image, decode_index, IMAGE, T0, write_bag


def _spec(n=10, swap=((2, 5),), corrupt=()):
    stamps = [T0 + i * 100_000_000 for i in range(n)]
    logs = [s + 7 for s in stamps]
    for a, b in swap:  # recorded out of stamp order
        logs[a], logs[b] = logs[b], logs[a]
    images = [None if i in corrupt else code_image(i) for i in range(n)]
    return BagSpec(stamps, logs, images, [(T0, 38.9, -77.03, 0)])


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_frames_come_in_header_stamp_order(tmp_path, storage):
    bag = write_bag(tmp_path / "bag", _spec(swap=((2, 5), (7, 8))), storage)
    assert bag_storage(bag) == storage
    with open_bag(bag) as reader:
        scan = scan_frames(reader, bag, "/camera/image", IMAGE)
        assert scan.count == 10 and scan.stamp_ok.all() and scan.from_log_time == 0
        selected = select_frames(scan)
        got = [decode_index(reader.deserialize(raw, IMAGE).data.reshape(8, 8, 3))
               for _, _, raw in iter_frames(reader, bag, "/camera/image", selected)]
    assert got == list(range(10))


def test_select_every_start_duration_limit(tmp_path):
    bag = write_bag(tmp_path / "bag", _spec(n=20))
    with open_bag(bag) as reader:
        scan = scan_frames(reader, bag, "/camera/image", IMAGE)
        stamps = lambda sel: ((scan.stamps_ns[sel] - T0) // 100_000_000).tolist()  # noqa: E731
        assert stamps(select_frames(scan, every=3)) == [0, 3, 6, 9, 12, 15, 18]
        assert stamps(select_frames(scan, start_s=0.5, duration_s=0.6)) == [5, 6, 7, 8, 9, 10]
        assert stamps(select_frames(scan, start_s=0.5, every=2, limit=3)) == [5, 7, 9]
        assert select_frames(scan, start_s=100).size == 0


def test_corrupt_frame_keeps_its_place_by_log_time(tmp_path):
    bag = write_bag(tmp_path / "bag", _spec(n=5, swap=(), corrupt=(2,)))
    with open_bag(bag) as reader:
        scan = scan_frames(reader, bag, "/camera/image", IMAGE)
    assert scan.stamp_ok.tolist() == [True, True, False, True, True]
    assert scan.stamps_ns[2] == scan.log_times_ns[2]
    assert np.all(np.diff(scan.stamps_ns) > 0)


def test_missing_and_mistyped_topics_list_what_the_bag_has(tmp_path):
    bag = write_bag(tmp_path / "bag", _spec(n=2, swap=()))
    with open_bag(bag) as reader:
        with pytest.raises(JziError) as err:
            require_topic(reader, bag, "/cam", IMAGE_TYPES, "camera images", "--image-topic")
        message = str(err.value)
        assert "no topic '/cam'" in message and "--image-topic" in message
        assert "/camera/image (sensor_msgs/msg/Image, 2 msgs)" in message
        assert "/gps/fix (sensor_msgs/msg/NavSatFix, 1 msgs)" in message
        with pytest.raises(JziError, match="/chatter .* has type std_msgs/msg/String, expected"):
            require_topic(reader, bag, "/chatter", IMAGE_TYPES, "camera images", "--image-topic")
        assert require_topic(reader, bag, "/camera/image", IMAGE_TYPES, "x", "y") == IMAGE


def test_unreadable_bags_are_one_clear_error(tmp_path):
    with pytest.raises(JziError, match="does not exist"):
        with open_bag(tmp_path / "nope"):
            pass
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JziError, match="cannot be read.*metadata.yaml"):
        with open_bag(empty):
            pass
    bag = write_bag(tmp_path / "bag", _spec(n=2, swap=()))
    (bag / "bag.db3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JziError, match=f"bag {bag} cannot be read"):
        with open_bag(bag):
            pass


@pytest.mark.parametrize("storage,suffix", [("sqlite3", "db3"), ("mcap", "mcap")])
def test_a_bare_storage_file_is_a_bag_too(tmp_path, storage, suffix):
    bag = write_bag(tmp_path / "bag", _spec(n=3, swap=()), storage)
    single = bag / f"bag.{suffix}"
    assert bag_storage(single) == storage
    with open_bag(single) as reader:
        assert require_topic(reader, single, "/camera/image", IMAGE_TYPES, "x", "y") == IMAGE
        assert scan_frames(reader, single, "/camera/image", IMAGE).count == 3
