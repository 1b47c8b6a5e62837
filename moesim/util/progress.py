"""Progress of long work on stderr: ``[label] done/total  elapsed  ETA``, as one updating line on a terminal
and as a plain line at most every ``every_s`` seconds (and at the end) otherwise, so logs stay short.

The ETA counts only the items that ran here: items served from a cache are counted done at once and do not
make the rate look faster than it is. No global state; the caller owns the object.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Report ``done`` of ``total`` items. ``cached``: items already done before any work (resumed)."""

    def __init__(self, label: str, total: int, cached: int = 0, stream: TextIO | None = None,
                 every_s: float = 2.0, clock=time.monotonic) -> None:
        self.label, self.total, self.cached = label, total, cached
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s, self.clock = every_s, clock
        self.start = clock()
        self.last = -float("inf")
        self.done = cached

    def eta_s(self) -> float | None:
        """Seconds left at the rate of the items run so far (None before the first one)."""
        ran = self.done - self.cached
        if ran <= 0:
            return None
        return (self.clock() - self.start) / ran * (self.total - self.done)

    def line(self, note: str = "") -> str:
        eta = self.eta_s()
        cached = f", {self.cached} cached" if self.cached else ""
        left = "" if self.done >= self.total else (" ETA --" if eta is None else f" ETA {_fmt(eta)}")
        return (f"[{self.label}] {self.done}/{self.total}{cached}  {_fmt(self.clock() - self.start)}"
                f"{left}{'  ' + note if note else ''}")

    def step(self, note: str = "", n: int = 1) -> None:
        """``n`` more items finished (``note``: what the last one was)."""
        self.done += n
        now = self.clock()
        if self.done < self.total and now - self.last < self.every_s and not self.tty:
            return
        self.last = now
        self._write(self.line(note))

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        """Absolute progress: ``done`` of ``total`` (when the total grows, as refined surfaces do)."""
        if total is not None:
            self.total = total
        self.step(note, done - self.done)

    def close(self, note: str = "") -> None:
        """End the line (terminal) or print the last state if it was not printed."""
        if self.tty:
            self.stream.write("\n")
        elif self.last < 0 or self.done < self.total:
            self._write(self.line(note))
        self.stream.flush()

    def _write(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class Phases:
    """A ``progress(phase, done, total, note)`` callback for work in named phases (a plan's surface points,
    then its deployments): one ``Progress`` line per phase, labelled ``label phase``, closed when done."""

    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 2.0) -> None:
        self.label, self.stream, self.every_s = label, stream, every_s
        self.bars: dict[str, Progress] = {}

    def __call__(self, phase: str, done: int, total: int, note: str = "") -> None:
        """``done`` of ``total`` in ``phase``; the total may grow (refined surfaces), and a count that starts
        again from below (the plan's next wave) starts a new line."""
        if total <= 0 or done <= 0:
            return
        bar = self.bars.get(phase)
        if bar is not None and done < bar.done:
            self.close(phase)
            bar = None
        if bar is None:
            bar = self.bars[phase] = Progress(f"{self.label} {phase}", total, stream=self.stream, every_s=self.every_s)
        bar.update(done, total, note)

    def close(self, phase: str | None = None) -> None:
        """End one phase's line (or every open one)."""
        for name in [phase] if phase else list(self.bars):
            bar = self.bars.pop(name, None)
            if bar is not None:
                bar.close()


def _fmt(seconds: float) -> str:
    """12 s, 3 min 05 s, 1 h 02 min."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
