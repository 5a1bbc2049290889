"""SIGINT / SIGTERM during training: noted by a handler, acted on by the epoch loop between two steps.

A signal that stopped the run at once could land while a checkpoint or metrics file is written, or leave the
state of a half-done step; deferring it lets the step under way finish and the loop save where it stands.
"""
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """SIGINT / SIGTERM stopped the run after its state was saved; `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class DeferredSignals:
    """Inside `with`: SIGINT / SIGTERM only set `received`, which the step loop checks between steps; a second one
    raises KeyboardInterrupt at once. The previous handlers come back on leaving. Off the main thread (where Python
    cannot install handlers) nothing is taken and `received` stays None."""

    def __init__(self):
        self.received = None  # the signal number, once one arrived
        self._previous = None  # {signal: handler} to put back; None while our handler is not to be kept installed

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.getsignal(s) for s in SIGNALS}
            self.retake()
        return self

    def __exit__(self, *exc_info):
        previous, self._previous = self._previous, None
        for s, handler in (previous or {}).items():
            signal.signal(s, handler)

    def retake(self):
        """(Re)install the handler; call it after every step. Every graph run puts MindSpore's own C handler for
        SIGINT back, which turns it into SIGTERM; re-taking SIGINT after each step keeps a Ctrl-C between steps a
        SIGINT (exit 130), while one during a step arrives as SIGTERM (exit 143). Two sigaction calls: negligible
        next to a step."""
        if self._previous is not None:
            for s in SIGNALS:
                signal.signal(s, self._on_signal)

    def _on_signal(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        self.received = signum

    def stop(self, where: str, saved: str) -> TrainingInterrupted:
        """The exception that ends the run after the signal received: `where` it stopped, what was `saved`."""
        return TrainingInterrupted(f"{signal.Signals(self.received).name} received: stopped at {where}; {saved}; "
                                   f"continue with --resume auto", 128 + self.received)
