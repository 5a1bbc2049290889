"""When the epoch loop prints a progress line, validates and saves a checkpoint: the config's intervals in one
place, so that the loop reads as what it does rather than as modular arithmetic."""


class Cadence:
    """Epochs and steps are 0-based, as the loop counts them; an interval of 0 switches the thing off."""

    def __init__(self, cfg, steps_per_epoch: int):
        self.cfg = cfg
        self.steps = steps_per_epoch

    def progress_line(self, step: int) -> bool:
        """Every `log_interval` steps of an epoch and at its last step."""
        return (step + 1) % self.cfg.log_interval == 0 or step + 1 == self.steps

    def read_steps(self, epoch: int, step: int) -> bool:
        """Where the steps' values are read off the device: wherever they are printed or saved, which includes
        the epoch's last step."""
        return self.progress_line(step) or self.step_checkpoint(epoch, step)

    def validation(self, epoch: int) -> bool:
        return self._every(self.cfg.val_interval, epoch)

    def epoch_checkpoint(self, epoch: int) -> bool:
        return self._every(self.cfg.ckpt_interval, epoch)

    def step_checkpoint(self, epoch: int, step: int) -> bool:
        """Every `ckpt_interval_steps` steps of the run, except where the epoch's checkpoint follows anyway."""
        interval = self.cfg.ckpt_interval_steps
        if interval <= 0 or (epoch * self.steps + step + 1) % interval:
            return False
        return not (step + 1 == self.steps and self.epoch_checkpoint(epoch))

    def _every(self, interval: int, epoch: int) -> bool:
        """Every `interval` epochs and at the last epoch."""
        return interval > 0 and ((epoch + 1) % interval == 0 or epoch + 1 == self.cfg.epochs)
