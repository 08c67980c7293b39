"""Training: specs, splits, preprocessing, the trainer and its metrics."""

from keel.training._runs import Runs
from keel.training._spec import RandomSplit, TimeSplit, TrainingSpec
from keel.training._trainer import TrainingError, TrainingRun, train

__all__ = ["RandomSplit", "Runs", "TimeSplit", "TrainingError", "TrainingRun", "TrainingSpec", "train"]
