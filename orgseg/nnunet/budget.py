"""A training unit's budget (the run config's ``strategy1_training`` and
``strategy2_training``): a plain dataclass the nnU-Net adapter takes, so it needs nothing
of the run configuration above it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingConfig:
    """How long one (dataset, fold) unit trains. The reference setup: 2000 epochs."""

    #: epochs per fold (nnU-Net's 1000; the reference study trained 2000)
    epochs: int = 2000
    #: training iterations per epoch
    iterations_per_epoch: int = 250
    #: validation iterations per epoch
    val_iterations_per_epoch: int = 50
    #: the CV folds trained (and ensembled at prediction)
    folds: tuple[int, ...] = (0, 1, 2, 3, 4)
    #: checkpoint_latest.pth written every this many epochs (a preempted unit resumes there)
    save_every_epochs: int = 50
    #: SGD's initial learning rate (nnU-Net's 0.01)
    initial_lr: float = 0.01
    #: SGD momentum; nnU-Net's 0.99 averages ~100 steps, too slow to build up in a budget
    #: of a few hundred iterations (the demo uses 0.9)
    momentum: float = 0.99
