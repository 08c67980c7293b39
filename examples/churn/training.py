"""The churn model: which customers leave within 30 days, from their profile and activity at the time.

``keel train churn`` (or ``project.train("churn")``) builds the training set point in time from the monthly
labels, trains on the earlier months, validates on the later ones and records the run; ``keel models register``
and ``keel models promote`` then make it ``churn@champion``. Importing this module only declares the spec.
"""

from sklearn.ensemble import HistGradientBoostingClassifier

from keel.training import TimeSplit, TrainingSpec

churn = TrainingSpec(
    "churn",
    labels="data/labels.parquet",  # customer_id, event_timestamp (the first of each month), churned
    label="churned",
    features=[
        "customer_profile:plan",
        "customer_profile:region",
        "customer_profile:tenure_days",
        "customer_activity:spend_30d",
        "customer_activity:orders_30d",
        "customer_activity:sessions_7d",
        "customer_activity:support_tickets_30d",
        "customer_activity:days_since_last_order",
        "customer_activity:avg_basket",
    ],
    # Shallow trees and a slow learning rate: churn is close to additive in these features, and a few hundred
    # labelled rows a month reward caution. A fixed number of trees (no early stopping) keeps every run doing
    # the same work; the spec's seed fixes the rest.
    model=HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.05,
        max_depth=3,
        min_samples_leaf=50,
        l2_regularization=1.0,
        early_stopping=False,
    ),
    # Strings are ordinal-encoded for the trees (unknown plans score as "unseen"), numbers median-imputed.
    preprocessing="auto",
    # Validate on the last fifth of the label rows in time: labels are monthly, so the cutoff falls on the
    # first of a month (October with the default dates) and the model is judged on months it never saw.
    split=TimeSplit(validation_fraction=0.2),
    seed=7,
    description="Churn within 30 days, from the customer's profile and activity at the time",
)
