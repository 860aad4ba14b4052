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

"""The node's ROS-free parts: latest-frame slot, rate limiter/meter, stats, worker, parameters."""
import sys
import threading
import time

import pytest

from jzi_ros.errors import JziError
from jzi_ros.ros import params
from jzi_ros.ros.runtime import LatestSlot, NodeStats, RateLimiter, RateMeter, Worker


def test_slot_keeps_only_the_newest_and_counts_replaced():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(timeout=0) == 4
    assert slot.replaced == 4
    assert slot.take(timeout=0.01) is None


def test_slot_take_waits_and_close_wakes():
    slot = LatestSlot()
    threading.Timer(0.05, slot.put, args=("frame",)).start()
    assert slot.take(timeout=2.0) == "frame"
    threading.Timer(0.05, slot.close).start()
    started = time.monotonic()
    assert slot.take(timeout=5.0) is None
    assert time.monotonic() - started < 2.0
    slot.put("late")
    assert slot.take(timeout=0) is None  # closed: nothing more is handed out


def test_rate_limiter():
    unlimited = RateLimiter(0.0)
    assert all(unlimited.admit(t * 0.001) for t in range(10))
    limiter = RateLimiter(2.0)  # at most one per 0.5 s
    admitted = [t for t in (0.0, 0.1, 0.49, 0.5, 0.7, 1.2) if limiter.admit(t)]
    assert admitted == [0.0, 0.5, 1.2]
    assert limiter.admit(0.3)  # stamps went backwards (bag restarted): start afresh


def test_rate_meter_window():
    meter = RateMeter(window_s=2.0)
    for t in (0.0, 0.5, 1.0, 1.5):
        meter.tick(t)
    assert meter.rate(1.5) == pytest.approx(2.0)
    assert meter.rate(3.2) == pytest.approx(0.5)  # only 1.5 is within [1.2, 3.2]
    assert meter.rate(10.0) == 0.0


def test_rate_meter_stays_bounded_when_nobody_reads_it():
    # without diagnostic_updater the node never asks for the rate: ticks must not pile up
    # (the soak benchmark found this: ~0.3 MB a minute at 30 Hz)
    meter = RateMeter(window_s=1.0)
    for i in range(10_000):
        meter.tick(i * 0.01)
    assert len(meter._times) <= 101


def test_stats_counts_and_mean_latency():
    stats = NodeStats()
    stats.frame_received()
    stats.localized(True, 0.9, 10.0, "")
    stats.localized(False, 0.1, 30.0, "low confidence")
    assert stats.bad_message("encoding '16UC1'") == 1
    snap = stats.snapshot(dropped_frames=3)
    assert (snap.frames, snap.fixes, snap.no_fixes, snap.bad_messages) == (2, 1, 1, 1)
    assert snap.latency_ms_mean == pytest.approx(20.0) and snap.latency_ms_last == 30.0
    assert snap.last_confidence == 0.1 and snap.last_reason == "low confidence"
    assert snap.dropped_frames == 3 and snap.input_hz > 0


def test_worker_processes_newest_survives_errors_and_stops():
    slot, seen, errors = LatestSlot(), [], []
    gate, started = threading.Event(), threading.Event()

    def handle(item):
        if item == "boom":
            raise RuntimeError("bad frame")
        started.set()
        gate.wait(2.0)
        seen.append(item)

    worker = Worker(slot, handle, errors.append)
    worker.start()
    slot.put("boom")
    deadline = time.monotonic() + 2.0
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    slot.put("a")  # the worker blocks on the gate with "a"...
    assert started.wait(2.0)
    for frame in ("b", "c", "d"):  # ...meanwhile only the newest survives
        slot.put(frame)
    gate.set()
    deadline = time.monotonic() + 2.0
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["a", "d"]
    assert [str(e) for e in errors] == ["bad frame"]
    assert worker.stop(timeout_s=2.0)


def test_worker_stop_times_out_on_a_stuck_handler():
    slot, release, started = LatestSlot(), threading.Event(), threading.Event()
    worker = Worker(slot, lambda item: (started.set(), release.wait(5.0)), lambda err: None)
    worker.start()
    slot.put(1)
    assert started.wait(2.0)
    assert worker.stop(timeout_s=0.1) is False
    release.set()


# --------------------------------------------------------------------------- parameters

def test_parameter_table_matches_settings_fields():
    fields = list(params.NodeSettings.__dataclass_fields__)
    assert fields == list(params.PARAMETER_NAMES)
    defaults = params.NodeSettings.from_values({})
    assert defaults.fix_topic == "jzi/fix" and defaults.image_transport == "raw"
    for spec in params.PARAMETERS:
        assert spec.description, spec.name
        assert type(getattr(defaults, spec.name)) is type(spec.default)
        if spec.min is not None:
            assert spec.min <= spec.default <= spec.max, spec.name
        if spec.choices:
            assert spec.default in spec.choices


def test_paths_and_topics_are_read_only():
    specs = {spec.name: spec for spec in params.PARAMETERS}
    for name in ("map_dir", "model_file", "export_dir", "image_topic", "fix_topic", "backend"):
        assert specs[name].read_only, name
    assert not specs["publish_no_fix"].read_only and not specs["max_rate_hz"].read_only


@pytest.mark.parametrize("name, value, message", [
    ("beam_width", 0, "expected 1 <= value <= 64"),
    ("beam_width", 2.5, "expected an integer"),
    ("confidence_threshold", float("nan"), "finite"),
    ("confidence_threshold", "high", "expected a number"),
    ("backend", "cuda", "expected one of"),
    ("publish_no_fix", 1, "expected true or false"),
    ("image_topic", 5, "expected a string"),
])
def test_bad_values_name_parameter_value_and_rule(name, value, message):
    with pytest.raises(JziError, match=message) as err:
        params.NodeSettings.from_values({name: value})
    assert f"'{name}'" in str(err.value)


def test_unknown_parameter_and_replace():
    with pytest.raises(JziError, match="unknown parameter"):
        params.NodeSettings.from_values({"beam": 3})
    settings = params.NodeSettings.from_values({"beam_width": 8, "altitude_m": 12})
    assert settings.beam_width == 8 and settings.altitude_m == 12.0
    assert isinstance(settings.altitude_m, float)
    changed = settings.replace(max_rate_hz=2.0)
    assert changed.max_rate_hz == 2.0 and changed.beam_width == 8
    with pytest.raises(JziError):
        settings.replace(max_rate_hz=-1.0)


def test_compressed_topic_follows_image_transport_convention():
    s = params.NodeSettings.from_values({"image_topic": "/cam/image/",
                                         "image_transport": "compressed"})
    assert s.subscribed_topic == "/cam/image/compressed"
    assert params.NodeSettings.from_values({}).subscribed_topic == "camera/image_raw"


def test_markdown_table_lists_every_parameter():
    table = params.markdown_table()
    for spec in params.PARAMETERS:
        assert f"| `{spec.name}` |" in table


def test_parameter_defaults_match_the_localizer_config():
    from jzi_ros.inference.backends import BACKENDS
    from jzi_ros.inference.localizer import LocalizerConfig

    config = LocalizerConfig()
    s = params.NodeSettings.from_values({})
    for name in ("beam_width", "position", "sigma_floor_m",
                 "altitude_m", "backend", "device", "force_engine_update",
                 "max_workspace_size"):
        assert getattr(s, name) == getattr(config, name), name
    # LocalizerConfig's None ("the gate calibrated into the checkpoint") is -1 as a ROS double
    assert config.confidence_threshold is None and s.confidence_threshold == -1.0
    assert s.altitude_variance == pytest.approx(config.altitude_sigma_m ** 2)
    assert set(params.BACKENDS) == set(BACKENDS)


def test_jzi_localizer_without_ros_is_one_line_and_exit_1(monkeypatch, capsys):
    from jzi_ros.ros import entry

    monkeypatch.delitem(sys.modules, "jzi_ros.ros.node", raising=False)
    monkeypatch.setitem(sys.modules, "rclpy", None)  # import rclpy -> ModuleNotFoundError
    assert entry.main([]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ROS 2 module" in err and "ros-pip" in err
