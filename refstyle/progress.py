"""A progress bar for long runs, on stderr.

On a terminal it redraws one line; elsewhere (a log file, CI) it prints a line every
``every`` seconds and at the end, so that logs stay short.
"""

import sys
import time


class Progress:
    def __init__(self, total, label="", stream=None, every=5.0, width=24, unit="it", start=0):
        self.total = int(total)
        self.start_count = start  # work done before (cells from a cache) is not timed
        self.unit = unit
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every
        self.width = width
        self.start = time.perf_counter()
        self.last_print = -float("inf")
        self.done = 0

    def line(self, done, text=""):
        elapsed = time.perf_counter() - self.start
        rate = (done - self.start_count) / elapsed if elapsed > 0 else 0.0
        filled = int(self.width * done / self.total) if self.total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        return f"{self.label}[{bar}] {done}/{self.total} {text} {rate:.2f} {self.unit}/s".rstrip()

    def update(self, done, text=""):
        self.done = done
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + self.line(done, text) + "\x1b[K")
            self.stream.flush()
        elif now - self.last_print >= self.every or done >= self.total:
            self.stream.write(self.line(done, text) + "\n")
            self.stream.flush()
            self.last_print = now

    def close(self, text=""):
        if self.tty:
            self.stream.write("\r" + self.line(self.done, text) + "\x1b[K\n")
            self.stream.flush()
