"""When a training run stops early: a signal or the wall-clock limit, agreed by every process.

    with Stopper(max_minutes=tcfg.max_minutes) as stopper:   # installs SIGTERM / SIGINT handlers
        for step in ...:
            ...train one step...
            reason = stopper.should_stop()   # "signal", "max_minutes" or "" (go on)
            if reason: save a checkpoint and break
    if stopper.interrupted: raise KeyboardInterrupt          # it was a Ctrl-C

SIGTERM (a scheduler's preemption) or a first Ctrl-C only sets a flag, read once per step:
the step in flight finishes, the loop saves and stops. The first Ctrl-C re-arms SIGINT with
Python's default handler, so a second one raises KeyboardInterrupt at once.

Why the processes must agree: on several hosts a checkpoint save is collective, every
process writes its part of the same step. A signal reaches one host, and the time limit may
run out on one host a step before another; a process that stopped and saved alone would wait
forever in the save for peers that train on, and they in their next step's collectives for
it: a deadlock. So `should_stop` combines every process's flags (`any_process`, a small
all-gather per step): if any process was signalled or ran out of time, all stop after the
same step and save the same checkpoint.
"""

from __future__ import annotations

import signal
import time
from typing import Callable

import jax
import numpy as np
from tqdm import tqdm

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def any_process(*flags: bool) -> tuple[bool, ...]:
    """Each flag, true on every process if it is true on any (one small all-gather over hosts)."""
    if jax.process_count() == 1:
        return tuple(bool(f) for f in flags)
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(np.asarray(flags, np.int32))  # (processes, flags)
    return tuple(bool(v) for v in np.max(gathered.reshape(-1, len(flags)), axis=0))


class Stopper:
    """Signal handlers and the time limit of one training loop (a context manager).

    max_minutes: stop once this much time has passed since entering (0: no limit).
    clock: seconds, monotonic (a test passes a fake one)."""

    def __init__(self, max_minutes: float = 0.0, clock: Callable[[], float] = time.perf_counter):
        self.max_minutes = max_minutes
        self.requested = False  # a signal arrived on this process
        self.interrupted = False  # ... and it was a Ctrl-C: the caller raises KeyboardInterrupt at the end
        self._clock = clock
        self._start = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "Stopper":
        self.requested = self.interrupted = False
        self._previous = {sig: signal.signal(sig, self._request) for sig in _SIGNALS}
        self._start = self._clock()
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _request(self, signum, frame) -> None:
        """SIGTERM (preemption) or a first Ctrl-C: finish this step, save, stop. A second Ctrl-C quits at once."""
        del frame
        self.requested = True
        if signum == signal.SIGINT:
            self.interrupted = True
            signal.signal(signal.SIGINT, signal.default_int_handler)
            tqdm.write("Ctrl-C: saving a checkpoint and stopping after this step (Ctrl-C again to quit at once)")
        else:
            tqdm.write(f"received signal {signum}: saving a checkpoint and stopping after this step")

    def out_of_time(self) -> bool:
        """This process has run longer than max_minutes (never when it is 0)."""
        return bool(self.max_minutes) and self._clock() - self._start > 60 * self.max_minutes

    def should_stop(self) -> str:
        """Why every process stops after this step: "signal", "max_minutes", or "" to go on.

        Collective on several processes: every process calls it once per step, after the step.
        A signal counts at the first call after it arrives: the step in flight finishes first."""
        signalled, out_of_time = any_process(self.requested, self.out_of_time())
        return "signal" if signalled else "max_minutes" if out_of_time else ""
