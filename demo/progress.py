"""Progress on stderr while the demo runs: which step, how far along, how long it took."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_steps: int, stream=sys.stderr):
        self.total = total_steps
        self.stream = stream
        self.index = 0
        self.started = 0.0
        self.timings: list[dict] = []
        self._last_detail = ""
        self._tty = stream.isatty()

    def step(self, title: str) -> None:
        self.index += 1
        self.started = time.monotonic()
        self._title = title
        self._last_detail = ""
        self._write(f"[{self.index}/{self.total}] {title} ...", newline=not self._tty)

    def detail(self, text: str) -> None:
        """A progress line within the step ("1200/3000 records"); repeated values are not printed again."""
        if text == self._last_detail:
            return
        self._last_detail = text
        if self._tty:
            self._write(f"\r[{self.index}/{self.total}] {self._title} ... {text}\033[K", newline=False)
        else:
            self._write(f"      {text}")

    def done(self, result: str = "done") -> None:
        seconds = time.monotonic() - self.started
        self.timings.append({"step": self._title, "seconds": round(seconds, 2)})
        prefix = f"\r[{self.index}/{self.total}] {self._title} ... " if self._tty else "      "
        self._write(f"{prefix}{result} ({seconds:.1f} s)\033[K" if self._tty else f"{prefix}{result} ({seconds:.1f} s)")

    def _write(self, text: str, newline: bool = True) -> None:
        self.stream.write(text + ("\n" if newline else ""))
        self.stream.flush()
