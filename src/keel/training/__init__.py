"""Training: specs, splits, preprocessing, the trainer and its metrics."""

from keel.errors import TrainingError
from keel.training._metrics import LOWER_IS_BETTER, primary_metric, worse_by
from keel.training._runs import Runs
from keel.training._spec import RandomSplit, TimeSplit, TrainingSpec
from keel.training._trainer import Trainer, TrainingRun, train

__all__ = [
    "LOWER_IS_BETTER",
    "RandomSplit",
    "Runs",
    "TimeSplit",
    "Trainer",
    "TrainingError",
    "TrainingRun",
    "TrainingSpec",
    "primary_metric",
    "train",
    "worse_by",
]
