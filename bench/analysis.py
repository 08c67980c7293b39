"""Model analysis (issue #14): permutation importance against scikit-learn's, and bootstrap segment metrics against
scoring the rows once.

Workloads (one JSON line each; ``--only NAME`` picks one):

- ``analysis.permutation_importance`` (:mod:`_analysis_importance`): 100,000 holdout rows × 20 features, 5 repeats,
  HistGradientBoosting; Keel's ``permutation_importance`` against ``sklearn.inspection.permutation_importance``
  with the same settings in the same run. Target ≤ 1.1×.
- ``analysis.segment_metrics`` (:mod:`_analysis_segments`): 1,000 bootstrap resamples over 1,000,000 scored rows
  and 20 segments against ``predict_proba`` of those rows once. Target < 1.0×.

``--quick`` runs both at a tenth (importance: a fifth) of the size.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _analysis_importance as importance
import _analysis_segments as segments
import _common as common


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(common.parser(__doc__.splitlines()[0], runs=3), argv)
    if common.selected(args, "analysis.permutation_importance"):
        common.emit(importance.run(args.quick, runs=args.runs, warmup=args.warmup), args)
    if common.selected(args, "analysis.segment_metrics"):
        common.emit(segments.run(quick=args.quick, runs=args.runs, warmup=args.warmup), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
