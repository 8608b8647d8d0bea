"""Progress a reader can follow, that does not flood a CI log.

A long transfer (an image push, a dataset copy or upload) reports its bytes
as they go; `Progress` turns that stream into a few lines: one when a
quarter more is done, or when `every` seconds have passed with some
progress, and one at the end.  Pure apart from the clock it is given.
"""

from __future__ import annotations

import time

UNITS = ("B", "KB", "MB", "GB", "TB")


def human_bytes(count: float) -> str:
    """1536 → '1.5 KB' (powers of 1024, one decimal from KB up)."""
    value, unit = float(count), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {UNITS[unit]}"


class Progress:
    """Say `what`'s progress through `log`, at most every `every` seconds or quarter."""

    def __init__(self, what: str, log, every: float = 10.0, clock=time.monotonic):
        self.what, self.log, self.every, self.clock = what, log, every, clock
        self.started = self.last_time = clock()
        self.last_fraction = 0.0
        self.last_done = 0
        self.parts: dict[str, tuple[int, int]] = {}  # part id -> (done, total)

    def update(self, part: str, done: int, total: int):
        """One part (a layer, a file) has `done` of `total` bytes."""
        self.parts[part] = (max(0, int(done)), max(0, int(total)))
        done_all = sum(d for d, _ in self.parts.values())
        total_all = sum(t for _, t in self.parts.values())
        now = self.clock()
        fraction = done_all / total_all if total_all else 0.0
        if done_all <= self.last_done:
            return
        if fraction >= self.last_fraction + 0.25 or now - self.last_time >= self.every:
            self._say(done_all, total_all, now)
            self.last_fraction = fraction - fraction % 0.25

    def _say(self, done: int, total: int, now: float):
        self.last_time, self.last_done = now, done
        share = f" of {human_bytes(total)} ({100 * done / total:.0f}%)" if total else ""
        self.log(f"{self.what}: {human_bytes(done)}{share}")

    def finish(self) -> str:
        """The closing line (also returned): bytes and seconds."""
        done = sum(d for d, _ in self.parts.values())
        seconds = self.clock() - self.started
        line = f"{self.what}: done, {human_bytes(done)} in {seconds:.1f} s"
        self.log(line)
        return line
