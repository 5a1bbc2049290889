"""A worker that cannot reach MindSpore's scheduler stops with one line naming the address, within a bound.

MindSpore's own `init()` keeps retrying to register for MS_TOPO_TIMEOUT seconds (30 minutes by default, msrun's
`--cluster_time_out` otherwise) and then fails in a multi-line log; a TCP connect to the scheduler first turns a
wrong or unreachable address into a short, clear error. The bound is MS_TOPO_TIMEOUT as well, so one setting
governs both; the mpirun bootstrap sets it to DEFAULT_TIMEOUT_S when it is unset.
"""
import os
import socket
import time

DEFAULT_TIMEOUT_S = 120


def scheduler_timeout() -> float:
    """Seconds a worker may take to reach the scheduler (MS_TOPO_TIMEOUT, else DEFAULT_TIMEOUT_S)."""
    value = os.environ.get("MS_TOPO_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"MS_TOPO_TIMEOUT={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise ValueError(f"MS_TOPO_TIMEOUT={value!r} must be positive")
    return seconds


def wait_for_scheduler(host: str, port: int, timeout_s: float | None = None):
    """Return once a TCP connection to host:port succeeds; RuntimeError naming them after `timeout_s`."""
    timeout_s = scheduler_timeout() if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    last_error = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"cannot reach MindSpore's scheduler at {host}:{port} within {timeout_s:.0f} s "
                               f"({last_error}); check MS_SCHED_HOST / --master_addr and that the port is open")
        try:
            with socket.create_connection((host, port), timeout=min(5.0, left)):
                return
        except OSError as err:
            last_error = err.strerror or type(err).__name__
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
