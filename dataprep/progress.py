"""Progress for long work: a tqdm bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("dataprep.progress")


class Progress:
    """Counts documents and tokens; shows rates.

    Args:
        stage: what is running, shown beside the numbers.
        enabled: True/False forces the bar on/off; None shows it only when stderr is a TTY
            (log lines every ``log_every`` seconds otherwise).
    """

    def __init__(self, stage: str, *, enabled: bool | None = None, log_every: float = 10.0, **_: object):
        self.stage = stage
        self.docs = 0
        self.tokens = 0
        self.start = time.perf_counter()
        self.log_every = log_every
        self._last_log = self.start
        tty = sys.stderr.isatty()
        self._bar = None
        if enabled or (enabled is None and tty):
            from tqdm import tqdm

            self._bar = tqdm(desc=stage, unit=" docs", unit_scale=True, dynamic_ncols=True, file=sys.stderr)

    def update(self, *, docs: int, tokens: int) -> None:
        self.docs += docs
        self.tokens += tokens
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.update(docs)
            self._bar.set_postfix_str(f"{self.tokens / max(now - self.start, 1e-9):,.0f} tok/s", refresh=False)
        elif now - self._last_log >= self.log_every:
            self._last_log = now
            log.info("%s: %s", self.stage, self.summary())

    def summary(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return (
            f"{self.docs:,} docs, {self.tokens:,} tokens in {elapsed:.1f}s "
            f"({self.docs / elapsed:,.0f} docs/s, {self.tokens / elapsed:,.0f} tokens/s)"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        log.info("%s done: %s", self.stage, self.summary())
