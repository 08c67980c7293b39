"""Retraining: a champion/challenger retrain of a model's spec with a promotion gate and an audit trail
(:func:`retrain`), and :class:`Schedule`, which repeats a check until stopped."""

from keel.retraining._retrain import RetrainDecision, retrain
from keel.retraining._schedule import Schedule

__all__ = ["RetrainDecision", "Schedule", "retrain"]
