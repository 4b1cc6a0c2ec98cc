"""Learning-rate schedules, as functions of the epoch index (0-based)."""

from __future__ import annotations

from deepem.declarations.run import LR_SCHEDULES

#: Burda et al. (2015): stage i = 0..7 lasts 3^i epochs at lr 1e-3 * 10^(-i/7); 3280 epochs in all.
BURDA_STAGES = 8
BURDA_EPOCHS = sum(3**i for i in range(BURDA_STAGES))



def burda_stage(epoch: int) -> int:
    """The stage i whose 3^i epochs contain `epoch`; epochs past the last stage stay in it."""
    end = 0
    for i in range(BURDA_STAGES):
        end += 3**i
        if epoch < end:
            return i
    return BURDA_STAGES - 1


def learning_rate_factor(schedule: str, epoch: int) -> float:
    """Multiplier of the base learning rate at `epoch`."""
    if schedule == "constant":
        return 1.0
    if schedule == "burda":
        return 10 ** (-burda_stage(epoch) / 7)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
