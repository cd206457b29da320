"""The scheduler's clock: wall time, unless the wall clock ran ahead of the time that really passed.

A clock stepped forward by hand (or a bad NTP server) must not send tomorrow's digest today: each
pass compares the wall clock with the last pass's wall time plus the time measured since (the
kernel's monotonic and boot clocks, which count real seconds, suspend included). Ahead by more
than `STEP_TOLERANCE`, the measured time is used and the operator warned. A clock that goes back
is believed (planning never goes behind a digest that exists, so nothing is sent twice). The
anchor lives in the database, so `digest schedule --once` from cron is held to it too; after a
reboot (another boot id) the wall clock is believed again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from digest import store

log = logging.getLogger("digest.scheduler")

ANCHOR_KEY = "schedule.clock"
STEP_TOLERANCE = timedelta(minutes=10)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True, slots=True)
class Reading:
    """The time a pass runs by, and how far the wall clock is ahead of it (zero when trusted)."""

    now: datetime
    ahead: timedelta = timedelta(0)

    def clock(self, wall: Callable[[], datetime]) -> Callable[[], datetime]:
        """A `now()` for the pass: the wall clock, less what it ran ahead."""
        ahead = self.ahead
        return (lambda: wall() - ahead) if ahead else wall


def read_clock(engine: store.Engine, wall: datetime) -> Reading:
    """The time to schedule by at `wall` (see the module docstring); records the next anchor."""
    monotonic, boot, boot_id = time.monotonic(), _boottime(), _boot_id()
    anchor = _load(store.Store(engine).meta.read(ANCHOR_KEY))
    if anchor is not None and boot_id and anchor.get("boot_id") == boot_id:
        passed = max(monotonic - float(anchor["monotonic"]), boot - float(anchor["boot"]))
        measured = datetime.fromisoformat(anchor["wall"]) + timedelta(seconds=passed)
        if wall - measured > STEP_TOLERANCE:
            ahead = wall - measured
            log.warning(
                "the system clock is %s ahead of the time measured since the last pass; "
                "scheduling by the measured time (%s). If the new time is right, restart "
                "the machine or run `digest schedule --once --reset-clock`",
                _span(ahead),
                measured.isoformat(timespec="seconds"),
            )
            return Reading(measured, ahead)
        if measured - wall > STEP_TOLERANCE:
            log.warning(
                "the system clock went back %s; digests already planned are not planned again",
                _span(measured - wall),
            )
    anchor = {"boot_id": boot_id, "wall": wall.isoformat(), "monotonic": monotonic, "boot": boot}
    store.Store(engine).meta.write({ANCHOR_KEY: json.dumps(anchor)})
    return Reading(wall)


def reset_clock(engine: store.Engine) -> None:
    """Forget the anchor: the next pass believes the wall clock as it is."""
    store.Store(engine).meta.write({ANCHOR_KEY: "null"})


def _load(raw: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _boottime() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux: the monotonic clock is the best there is
        return time.monotonic()


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"
