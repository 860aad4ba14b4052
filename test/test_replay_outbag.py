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

"""--write-bag: the input bag copied verbatim plus NavSatFix fixes stamped with image stamps."""
import numpy as np
import pytest
import yaml

from jzi_ros.errors import JziError
from jzi_ros.evaluation.bags import open_bag
from jzi_ros.evaluation.outbag import BagOutputOptions, write_fix_bag
from jzi_ros.evaluation.replay import replay_bag, ReplayOptions
from replay_support import IndexLocalizer, NAVSAT, offsets_for, standard_spec, write_bag
from support import tiny_tree

N = 12


def _replay(tmp_path, storage="sqlite3", kind="raw"):
    tree = tiny_tree()
    spec = standard_spec(tree, N, kind=kind, corrupt=(7,))
    bag = write_bag(tmp_path / "in", spec, storage)
    loc = IndexLocalizer(tree, spec, offsets_for(N), no_fix=(2,))
    options = ReplayOptions("/camera/image", "/gps/fix", progress=False)
    return bag, replay_bag(bag, loc, options), loc


def _all_messages(bag):
    with open_bag(bag) as reader:
        return [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]


@pytest.mark.parametrize("storage,version", [("sqlite3", 8), ("mcap", 9)])
def test_output_bag_reads_back(tmp_path, storage, version):
    bag, result, loc = _replay(tmp_path, storage)
    out = write_fix_bag(result, tmp_path / "out", BagOutputOptions(version=version))
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == version and meta["storage_identifier"] == storage
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metadata.yaml", f"out.{'db3' if storage == 'sqlite3' else 'mcap'}"])

    original = _all_messages(bag)
    copied = _all_messages(out)
    kept = [m for m in copied if m[0] != "/jzi/fix"]
    assert sorted(kept) == sorted(original)  # every input message, same bytes and times
    log_times = [m[2] for m in copied]
    assert log_times == sorted(log_times)

    with open_bag(out) as reader:
        assert reader.topics["/jzi/fix"].msgtype == NAVSAT
        fixes = [(t, reader.deserialize(raw, NAVSAT)) for c, t, raw in reader.messages()
                 if c.topic == "/jzi/fix"]
    localized = sorted(result.localized, key=lambda r: r.log_time_ns)  # bag order
    assert len(fixes) == len(localized) == N - 1  # the corrupt frame has no fix
    for (log_time, msg), record in zip(fixes, localized):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert stamp == record.stamp_ns and log_time == record.log_time_ns
        assert msg.header.frame_id == "camera"
        assert (msg.latitude, msg.longitude) == pytest.approx(
            (record.fix.latitude, record.fix.longitude), abs=1e-12)
        want = 0 if record.fix.ok else -1
        assert msg.status.status == want
        cov = np.asarray(msg.position_covariance).reshape(3, 3)
        assert cov[:2, :2] == pytest.approx(record.fix.covariance_enu[:2, :2])
        assert msg.position_covariance_type == 3
    assert any(msg.status.status == -1 for _, msg in fixes)  # frame 2 is NO_FIX


def test_output_bag_options_and_refusals(tmp_path):
    bag, result, _ = _replay(tmp_path, "mcap", "png")
    out = write_fix_bag(result, tmp_path / "out",
                        BagOutputOptions(storage="sqlite3", topic="/vis/fix", frame_id="cam2"))
    with open_bag(out) as reader:
        assert "/vis/fix" in reader.topics and "/jzi/fix" not in reader.topics
        msg = next(reader.deserialize(raw, NAVSAT) for c, _, raw in reader.messages()
                   if c.topic == "/vis/fix")
        assert msg.header.frame_id == "cam2"
    assert (out / "out.db3").exists()
    with pytest.raises(JziError, match="already exists"):
        write_fix_bag(result, out)
    write_fix_bag(result, out, overwrite=True)
    with pytest.raises(JziError, match="bag-version"):
        write_fix_bag(result, tmp_path / "o2", BagOutputOptions(version=7))
    with pytest.raises(JziError, match="already has a topic /gps/fix"):
        write_fix_bag(result, tmp_path / "o3", BagOutputOptions(topic="/gps/fix"))
    assert not (tmp_path / "o3").exists()
