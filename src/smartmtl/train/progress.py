"""What a training stage shows while it trains: a bar in a terminal, a line a minute in a log.

``dvc repro`` passes the terminal through to the stage, so a user watching sees a tqdm bar per
epoch (steps, examples per second, running loss, time left); in CI or a log file, where a bar
would print thousands of carriage returns, the same figures come as one line a minute and
one at the end of each epoch. The running loss is read from the device at most every couple
of seconds, so showing it costs no synchronisation per step.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0
REFRESH_S = 2.0


class Progress:
    def __init__(self, label: str, steps: int, running_loss: Callable[[], float], enabled: bool = True,
                 interactive: bool | None = None):
        self.label, self.steps, self.running_loss, self.enabled = label, steps, running_loss, enabled
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.done = self.examples = 0
        self.started = self.shown = self.logged = time.perf_counter()
        self.bar = tqdm(total=steps, desc=label, unit="step", leave=True, dynamic_ncols=True) \
            if enabled and self.interactive else None

    def step(self, examples: int) -> None:
        self.done += 1
        self.examples += examples
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(1)
            if now - self.shown >= REFRESH_S:
                self.shown = now
                self.bar.set_postfix(loss=f"{self.running_loss():.3f}", ex_s=f"{self.rate(now):.1f}")
        elif now - self.logged >= LOG_EVERY_S:
            self.logged = now
            log.info("%s", self.line(now))

    def rate(self, now: float) -> float:
        return self.examples / max(now - self.started, 1e-9)

    def line(self, now: float) -> str:
        elapsed = now - self.started
        left = elapsed / self.done * (self.steps - self.done) if self.done else float("nan")
        return (f"{self.label}: step {self.done}/{self.steps}, {self.rate(now):.1f} examples/s, "
                f"loss {self.running_loss():.3f}, {elapsed:.0f} s elapsed, ~{left:.0f} s left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
