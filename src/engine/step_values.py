"""A training step's values (loss, correct count, whether it updated the weights) stay on the device until the
epoch loop reads them.

Turning a value into a Python number waits for the device to finish that step. The loop reads the steps since
its last read only where it uses them (a progress line every `log_interval` steps, a checkpoint, a signal, the
run's first step, the end of an epoch), so the device runs ahead in between; the values are read in step order
and summed on the host as before, so every figure is the same as when each step was read at once.
"""
import math
from typing import NamedTuple


class StepValues(NamedTuple):
    """One step's values as Python numbers; `finite`: its loss was finite and it updated the weights."""

    step: int  # 0-based, within its epoch
    loss: float
    correct: int
    finite: bool
    timed: bool  # counted in the speed figures (not the run's first, compiling step)


class PendingSteps:
    """The device outputs `(loss, correct, updated)` of the steps not read yet, in order."""

    def __init__(self):
        self._steps = []

    def add(self, step: int, outputs, timed: bool):
        self._steps.append((step, outputs, timed))

    def read(self) -> list:
        """The pending steps as StepValues, in step order (this waits for the device); none are pending after."""
        steps, self._steps = self._steps, []
        values = []
        for step, (loss, correct, updated), timed in steps:
            loss = float(loss.asnumpy())
            values.append(StepValues(step, loss, int(correct.asnumpy()),
                                     math.isfinite(loss) and bool(updated.asnumpy()), timed))
        return values
