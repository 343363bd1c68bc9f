"""A mutant may loop forever: each test of the fixture ends after half a second."""

import signal

import pytest


def _expire(signum, frame):
    raise TimeoutError("test took longer than 0.5 s")


@pytest.fixture(autouse=True)
def alarm():
    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
