"""teco_jax/stopping.py without a trainer: signals, the time limit, and the processes' agreement."""

import os
import signal

import jax
import numpy as np
import pytest
from jax.experimental import multihost_utils

from teco_jax import stopping
from teco_jax.stopping import Stopper


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sigterm_requests_a_stop_and_the_handlers_are_restored(capsys):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with Stopper() as stopper:
        assert stopper.should_stop() == ""
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
        assert stopper.requested and not stopper.interrupted
        assert stopper.should_stop() == "signal"
        assert stopper.should_stop() == "signal"  # it stays requested
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert f"received signal {int(signal.SIGTERM)}: saving a checkpoint" in capsys.readouterr().out


def test_a_first_ctrl_c_requests_a_stop_and_a_second_one_interrupts(capsys):
    before = signal.getsignal(signal.SIGINT)
    with Stopper() as stopper:
        os.kill(os.getpid(), signal.SIGINT)
        assert stopper.interrupted and stopper.should_stop() == "signal"
        assert "Ctrl-C: saving a checkpoint and stopping after this step" in capsys.readouterr().out
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the next line
    assert signal.getsignal(signal.SIGINT) == before


def test_entering_again_starts_afresh():
    stopper = Stopper()
    with stopper:
        os.kill(os.getpid(), signal.SIGTERM)
    with stopper:
        assert stopper.should_stop() == ""


def test_the_time_limit_counts_from_entering():
    clock = FakeClock()
    stopper = Stopper(max_minutes=2, clock=clock)
    clock.now += 1000  # before entering: does not count
    with stopper:
        clock.now += 119
        assert not stopper.out_of_time() and stopper.should_stop() == ""
        clock.now += 2
        assert stopper.out_of_time() and stopper.should_stop() == "max_minutes"
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.should_stop() == "signal"  # a signal is the reason that wins


def test_no_time_limit_when_max_minutes_is_zero():
    clock = FakeClock()
    with Stopper(max_minutes=0, clock=clock) as stopper:
        clock.now += 1e9
        assert stopper.should_stop() == ""


def test_one_process_agrees_with_itself():
    assert stopping.any_process() == ()
    assert stopping.any_process(0, 1, False, True) == (False, True, False, True)


def test_a_stop_on_any_process_stops_every_process(monkeypatch):
    """With 3 processes, the flags of the others come from the all-gather: one peer's signal or one
    peer's time limit stops this process too, although its own flags are false."""
    peers = [[0, 0], [0, 0], [0, 0]]  # (processes, [signalled, out of time]); this process is row 0
    sent = []

    def allgather(local):
        sent.append(np.asarray(local).tolist())
        return np.asarray([np.asarray(local)] + [np.asarray(p, np.int32) for p in peers[1:]])

    monkeypatch.setattr(jax, "process_count", lambda: 3)
    monkeypatch.setattr(multihost_utils, "process_allgather", allgather)
    clock = FakeClock()
    with Stopper(max_minutes=1, clock=clock) as stopper:
        assert stopper.should_stop() == ""
        peers[2] = [0, 1]
        assert stopper.should_stop() == "max_minutes"
        peers[1] = [1, 0]
        assert stopper.should_stop() == "signal"
    assert sent == [[0, 0]] * 3  # this process's own flags, once per call
