"""Feature definitions of the churn example: a customer entity, their profile and their daily activity."""

from datetime import timedelta

from keel import Entity, FeatureView, Field, ParquetSource

customer = Entity("customer", join_keys=["customer_id"], description="A customer of the shop")

customer_profile = FeatureView(
    "customer_profile",
    entities=[customer],
    source=ParquetSource("data/customers.parquet", timestamp="event_time"),
    schema=[
        Field("plan", "string", "subscription plan: basic, standard, premium (enterprise appears later)"),
        Field("region", "string", "sales region"),
        Field("tenure_days", "int64", "days since signup, as of the profile row"),
    ],
    # A profile row stays true until the next one replaces it.
    ttl=None,
    description="Customer profile snapshots: one at signup (or first export) and one per plan change",
)

customer_activity = FeatureView(
    "customer_activity",
    entities=[customer],
    source=ParquetSource("data/activity.parquet", timestamp="event_time"),
    schema=[
        Field("spend_30d", "float64", "spend over the previous 30 days"),
        Field("orders_30d", "int64", "orders over the previous 30 days"),
        Field("sessions_7d", "int64", "sessions over the previous 7 days"),
        Field("support_tickets_30d", "int64", "support tickets over the previous 30 days"),
        Field("days_since_last_order", "float64", "days since the last order; null when there was none"),
        Field("avg_basket", "float64", "spend_30d / orders_30d; 0 without orders"),
    ],
    # Aggregates are written daily; one older than a week means the pipeline stopped for that customer.
    ttl=timedelta(days=7),
    description="Daily activity aggregates per customer, as of 00:00 UTC",
)
