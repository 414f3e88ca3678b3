"""How a run ends when it is told to: SIGTERM as Ctrl-C, and worker processes that die with their parent.

``timeout``, batch schedulers and ``docker stop`` send SIGTERM, not SIGINT. Inside
:func:`stop_signals` both raise ``KeyboardInterrupt`` in the main thread, so a synthesis
stops the same way for either and still writes its best image; :func:`stop_status` then
gives the exit status the shell expects for the signal received (128 + its number: 130
for SIGINT, 143 for SIGTERM) and :func:`stop_reason` the words for it. While the best
image is written, :func:`hold_stop_signals` holds a further signal until the files are whole.

``refstyle figure --jobs N`` runs cells in N processes. Each runs
:func:`follow_parent` first, given the read end of a :class:`Lifeline` pipe whose write end
only the parent holds: when the parent closes it (it was interrupted) or dies, however it
dies (``kill -9`` included, when the kernel closes its files), the read end sees the end
of the file and the worker exits at once. On Linux the kernel is also asked to send the
worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), which works even while
the worker's Python is busy.
"""

import contextlib
import os
import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received = []  # the stop signals received inside stop_signals, in order


def _raise_interrupt(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_signals():
    """While inside, SIGINT and SIGTERM raise ``KeyboardInterrupt`` (a signal the process ignores stays ignored).

    Outside the main thread (where Python cannot set handlers) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    saved = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. SIGINT in a background job of a script
            saved[signum] = signal.signal(signum, _raise_interrupt)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def hold_stop_signals():
    """While inside (the best image being written), a stop signal is held, not raised: yields the list of those held.

    So a second Ctrl-C, or the SIGTERM that follows a first one, cannot cut the writing
    of the files short (SIGKILL still can, and leaves the old files whole: every write is
    atomic); the caller ends with :func:`stop_status` where one was held.
    """
    held = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum, frame):
        _received.append(signum)
        held.append(signum)

    saved = {s: signal.signal(s, hold) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield held
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def stop_signal():
    """The first stop signal received in :func:`stop_signals`; SIGINT where a ``KeyboardInterrupt`` came otherwise."""
    return _received[0] if _received else signal.SIGINT


def stop_status():
    """The exit status after a stop: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + int(stop_signal())


def stop_reason():
    """``"interrupted"`` (Ctrl-C) or ``"terminated by SIGTERM"``."""
    signum = stop_signal()
    return "interrupted" if signum == signal.SIGINT else f"terminated by {signal.Signals(signum).name}"


class Lifeline:
    """A pipe from a parent to its worker processes: they exit when it closes, or when the parent dies.

    ``reader`` goes to each worker (``initializer=follow_parent, initargs=(lifeline.reader,)``);
    :meth:`cut` (or leaving the ``with`` block) closes the parent's write end.
    """

    def __init__(self, context):
        self.reader, self._writer = context.Pipe(duplex=False)
        self.parent = os.getpid()

    def cut(self):
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cut()
        self.reader.close()


def _die_with_parent_linux(parent):
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no libc with prctl: the pipe still watches
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def follow_parent(reader, parent=None):
    """In a worker process: exit as soon as ``reader``, a :class:`Lifeline`'s, sees the end of the pipe.

    ``parent``: the parent's pid, for the Linux death signal (default: this process's parent now).
    """
    if sys.platform.startswith("linux"):
        _die_with_parent_linux(os.getppid() if parent is None else parent)

    def watch():
        try:
            reader.recv_bytes()  # the parent never writes: this returns only at the end of the pipe
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="refstyle-lifeline", daemon=True).start()
