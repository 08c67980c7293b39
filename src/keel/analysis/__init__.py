"""Model analysis: metrics by segment with intervals, weak segments, curves, comparison of versions, importance and
selection — on the data a model was trained and served on, stored with its version."""

from keel.analysis._analyze import Analysis, Scored, analyze
from keel.analysis._service import DATA_CHOICES, Analyses, Rows, StoredReport

__all__ = ["DATA_CHOICES", "Analyses", "Analysis", "Rows", "Scored", "StoredReport", "analyze"]
