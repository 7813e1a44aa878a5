"""Progress of a generation for a log file (nohup, SLURM): a bar on a terminal, timestamped lines with an ETA
otherwise. A 22-minute candidate generation used to show no line between its start and its end."""
from __future__ import annotations

import io
import logging
import sys
import time

from tqdm.auto import tqdm

from srlm_exp.distributed import is_main
from srlm_exp.phases import PROGRESS_EVERY_SECONDS, duration

progress_log = logging.getLogger("srlm_exp.progress")  # the logger of the phases' own lines (srlm_exp/progress.py)


class LoggedBar(tqdm):
    """Draws nothing; logs `desc: n/total after T (rate, ETA)` at most every `every` seconds, and a last line at
    the end of work that took that long. Rank 0 speaks for all ranks."""

    def __init__(self, *args, every: float = PROGRESS_EVERY_SECONDS, **kwargs):
        kwargs["file"] = io.StringIO()  # tqdm's own frames go nowhere
        kwargs["disable"] = False
        super().__init__(*args, **kwargs)
        self._every = every
        self._started = self._last_line = time.time()  # our own clock: tqdm's is bound at its import

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        if time.time() - self._last_line >= self._every:
            self._line()
        return shown

    def close(self) -> None:
        if not self.disable and time.time() - self._started >= self._every:
            self._line(final=True)
        super().close()

    def _line(self, final: bool = False) -> None:
        self._last_line = time.time()
        if not is_main():
            return
        elapsed = self._last_line - self._started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        total = f"/{self.total:g}" if self.total else ""
        if final:
            progress_log.info("%s: %g%s done in %s (%.2f/s)", self.desc, self.n, total, duration(elapsed), rate)
        else:
            eta = (f", ETA {duration((self.total - self.n) / rate)}" if self.total and rate > 0 else "")
            progress_log.info("%s: %g%s after %s (%.2f/s%s)", self.desc, self.n, total, duration(elapsed), rate, eta)


def progress_bar(total: int, desc: str, show: bool = True) -> tqdm:
    """A bar on a terminal, progress lines (LoggedBar) in a log file, nothing when `show` is False."""
    if not show:
        return tqdm(total=total, desc=desc, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, leave=False)
    return LoggedBar(total=total, desc=desc)
