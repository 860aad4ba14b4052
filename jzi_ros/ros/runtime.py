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
ROS-free plumbing of the node, unit-tested without ROS 2.

Latest-frame slot, rate limiter, rate meters, statistics and the inference worker thread.

Why a one-slot mailbox and a worker: inference takes tens to hundreds of milliseconds, cameras
publish at 10-30 Hz. Queueing frames would make every fix older than the last; blocking the
executor would stall diagnostics and parameter services. So the subscription callback only
drops the message into the slot (replacing an unprocessed one) and the worker always takes the
newest.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
import re
import threading
import time
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")

# Logged once the map, model and subscription are up: demo.launch.py starts the bag on it.
READY_MESSAGE = "localizer ready"


class LatestSlot(Generic[T]):
    """A thread-safe mailbox of size one: ``put`` replaces, ``take`` waits for a new item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.replaced = 0  # items overwritten before the worker took them (stale frames)

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float | None = None) -> T | None:
        """Remove and return the newest item; None on timeout or after ``close``."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        """Wake any waiting ``take`` and make later ones return None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class RateLimiter:
    """
    Admits at most ``max_rate_hz`` events per second (0 = no limit).

    The node feeds image stamps, so the limit holds in sim time and in bag playback at any
    speed.
    """

    def __init__(self, max_rate_hz: float = 0.0) -> None:
        self.max_rate_hz = float(max_rate_hz)
        self._last: float | None = None

    def admit(self, now_s: float | None = None) -> bool:
        now = time.monotonic() if now_s is None else now_s
        # a clock/stamp that went backwards (bag restarted, sim time reset) starts afresh
        if self.max_rate_hz > 0 and self._last is not None and now >= self._last:
            if now - self._last < 1.0 / self.max_rate_hz:
                return False
        self._last = now
        return True


class LogThrottle:
    """
    Say when a repeated message should be logged: a new kind at once, the same kind once a period.

    The kind is the message with its numbers blanked, so "corrupt JPEG of 512 bytes" and "... 498
    bytes" are one kind while a different problem is logged the moment it first appears.
    """

    def __init__(self, period_s: float) -> None:
        self.period_s = float(period_s)
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def admit(self, text: str, now_s: float | None = None) -> bool:
        now = time.monotonic() if now_s is None else now_s
        kind = re.sub(r"\d+", "#", text)
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.period_s:
                return False
            if len(self._last) > 256:  # bounded: a stream of ever-new texts cannot grow it
                self._last.clear()
            self._last[kind] = now
            return True


class RateMeter:
    """Events per second over a sliding window (for diagnostics)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now_s: float | None = None) -> None:
        now = time.monotonic() if now_s is None else now_s
        self._times.append(now)
        self._forget_before(now - self.window_s)  # bounded even if nobody reads the rate

    def rate(self, now_s: float | None = None) -> float:
        now = time.monotonic() if now_s is None else now_s
        self._forget_before(now - self.window_s)
        return len(self._times) / self.window_s

    def _forget_before(self, oldest_s: float) -> None:
        while self._times and self._times[0] < oldest_s:
            self._times.popleft()


@dataclass
class StatsSnapshot:
    input_hz: float
    processed_hz: float
    fix_hz: float
    frames: int
    fixes: int
    no_fixes: int
    bad_messages: int
    dropped_frames: int
    errors: int
    latency_ms_last: float
    latency_ms_mean: float
    last_confidence: float
    last_reason: str
    last_bad_message: str


class NodeStats:
    """Counters shared by the subscription callback, the worker and the diagnostics task."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._input, self._processed, self._fix = (RateMeter(window_s) for _ in range(3))
        self.frames = self.fixes = self.no_fixes = self.bad_messages = self.errors = 0
        self.latency_ms_last = self.latency_ms_mean = 0.0
        self.last_confidence = 0.0
        self.last_reason = ""
        self.last_bad_message = ""

    def frame_received(self) -> None:
        with self._lock:
            self._input.tick()

    def bad_message(self, why: str) -> int:
        """Count a skipped message; returns the new total (for throttled logging)."""
        with self._lock:
            self.bad_messages += 1
            self.last_bad_message = why
            return self.bad_messages

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def localized(self, ok: bool, confidence: float, latency_ms: float, reason: str) -> None:
        with self._lock:
            self._processed.tick()
            self.frames += 1
            if ok:
                self.fixes += 1
                self._fix.tick()
            else:
                self.no_fixes += 1
            self.latency_ms_last = latency_ms
            # running mean over the whole run: stable number for the diagnostics panel
            self.latency_ms_mean += (latency_ms - self.latency_ms_mean) / self.frames
            self.last_confidence = confidence
            self.last_reason = reason

    def snapshot(self, dropped_frames: int = 0) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(self._input.rate(), self._processed.rate(), self._fix.rate(),
                                 self.frames, self.fixes, self.no_fixes, self.bad_messages,
                                 dropped_frames, self.errors, self.latency_ms_last,
                                 self.latency_ms_mean, self.last_confidence, self.last_reason,
                                 self.last_bad_message)


class Worker:
    """
    Runs ``handle(item)`` for the newest item of ``slot`` on its own thread until stopped.

    An exception from ``handle`` goes to ``on_error`` and the loop continues: one bad frame must
    not end localization.
    """

    def __init__(self, slot: LatestSlot[Any], handle: Callable[[Any], None],
                 on_error: Callable[[BaseException], None], name: str = "jzi-worker") -> None:
        self.slot = slot
        self._handle = handle
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self.slot.closed:
            item = self.slot.take(timeout=0.5)
            if item is None:
                continue
            try:
                self._handle(item)
            except Exception as err:  # noqa: BLE001 - reported, then the next frame
                self._on_error(err)

    def stop(self, timeout_s: float = 3.0) -> bool:
        """
        Close the slot and join; False if the thread is still busy after ``timeout_s``.

        (A long inference: the thread is a daemon, so the process can still exit.)
        """
        self.slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()
