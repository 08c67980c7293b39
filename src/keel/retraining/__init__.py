"""Retraining: a champion/challenger retrain of a model's spec with a promotion gate and an audit trail
(:class:`Retrainer`), and :class:`Schedule`, which repeats a check until stopped."""

from keel.retraining._retrain import RetrainDecision, Retrainer, Train
from keel.retraining._schedule import Schedule

__all__ = ["RetrainDecision", "Retrainer", "Schedule", "Train"]
