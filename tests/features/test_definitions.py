"""Entity, Field and FeatureView: validation, dtypes, definition hashes and specs."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from keel.errors import ValidationError
from keel.features import (
    DTYPES,
    CsvSource,
    DataFrameSource,
    Entity,
    FeatureView,
    Field,
    ParquetSource,
    arrow_type,
    canonical_dtype,
    definition_hash,
)
from keel.features._dtypes import dtype_of_arrow

customer = Entity("customer", join_keys=["customer_id"])


def _view(**overrides: Any) -> FeatureView:
    args: dict[str, Any] = {
        "entities": [customer],
        "source": ParquetSource("data/activity.parquet", timestamp="event_time"),
        "schema": [Field("spend_30d", "float64"), Field("orders_30d", "int64"), Field("plan", "string")],
        "ttl": timedelta(days=30),
        "tags": {"team": "growth", "owner": "ml"},
    }
    args.update(overrides)
    name = args.pop("name", "customer_activity")
    return FeatureView(name, **args)


# -- entities -----------------------------------------------------------------------------------------------
def test_an_entity_defaults_to_one_join_key_named_after_it() -> None:
    assert Entity("customer").join_keys == ("customer_id",)


def test_an_entity_accepts_one_join_key_as_a_string_or_several_as_a_list() -> None:
    assert Entity("customer", "cid").join_keys == ("cid",)
    assert Entity("order_line", ["order_id", "line_no"]).join_keys == ("order_id", "line_no")


@pytest.mark.parametrize("bad", ["1customer", "customer-id", "customer id", "", "customer\n", "café", 7, None])
def test_an_entity_with_an_invalid_name_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError, match=r"entity name .* is invalid: use letters, digits and underscores"):
        Entity(bad, ["customer_id"])


def test_a_name_with_the_reserved_prefix_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"'__keel_row' is reserved"):
        Entity("__keel_row")


def test_an_entity_without_join_keys_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"entity 'customer' needs at least one join key") as info:
        Entity("customer", [])
    assert info.value.field == "customer"


def test_an_entity_listing_a_join_key_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"entity 'customer' lists a join key twice"):
        Entity("customer", ["customer_id", "customer_id"])


def test_an_entity_with_an_invalid_join_key_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"entity 'customer': join key name 'customer id' is invalid"):
        Entity("customer", ["customer id"])


def test_entities_with_the_same_declaration_are_equal_and_hash_alike() -> None:
    a = Entity("customer", ["customer_id"], tags={"a": "1", "b": "2"})
    b = Entity("customer", ("customer_id",), tags={"b": "2", "a": "1"})

    assert a == b
    assert hash(a) == hash(b)
    assert a.definition_hash == b.definition_hash


def test_an_entity_round_trips_through_its_spec() -> None:
    entity = Entity("order_line", ["order_id", "line_no"], description="a line of an order", tags={"pii": "no"})

    again = Entity.from_spec(json.loads(json.dumps(entity.spec())))

    assert again == entity
    assert again.definition_hash == entity.definition_hash


# -- fields and dtypes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("int", "int64"),
        ("INTEGER", "int64"),
        ("float", "float64"),
        ("double", "float64"),
        ("boolean", "bool"),
        ("str", "string"),
        ("datetime", "timestamp"),
        (" Float64 ", "float64"),
        ("list[float]", "list[float64]"),
        ("list<float64>", "list[float64]"),
        ("embedding", "list[float64]"),
    ],
)
def test_dtype_aliases_are_canonicalised(alias: str, canonical: str) -> None:
    assert Field("x", alias).dtype == canonical
    assert canonical_dtype(alias) == canonical


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_canonical_dtype_is_kept(dtype: str) -> None:
    assert Field("x", dtype).dtype == dtype


def test_an_unknown_dtype_is_refused_listing_the_valid_ones_and_naming_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        Field("spend", "decimal")

    assert str(info.value) == (
        "field 'spend': unknown dtype 'decimal'; valid dtypes are: "
        "int64, float64, bool, string, timestamp, list[float64]"
    )
    assert info.value.field == "spend"


def test_a_dtype_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"field 'spend': dtype must be a string, got type") as info:
        Field("spend", float)  # type: ignore[arg-type]
    assert info.value.field == "spend"


@pytest.mark.parametrize(
    ("arrow", "dtype"),
    [
        (pa.int32(), "int64"),
        (pa.uint8(), "int64"),
        (pa.float32(), "float64"),
        (pa.decimal128(10, 2), "float64"),
        (pa.bool_(), "bool"),
        (pa.string(), "string"),
        (pa.large_string(), "string"),
        (pa.dictionary(pa.int32(), pa.string()), "string"),
        (pa.dictionary(pa.int8(), pa.int64()), "int64"),
        (pa.timestamp("ns"), "timestamp"),
        (pa.timestamp("s", tz="Europe/Paris"), "timestamp"),
        (pa.date32(), "timestamp"),
        (pa.list_(pa.float32()), "list[float64]"),
        (pa.list_(pa.float64(), 4), "list[float64]"),
        (pa.large_list(pa.int64()), "list[float64]"),
        (pa.list_(pa.string()), None),
        (pa.binary(), None),
        (pa.struct([("a", pa.int64())]), None),
    ],
)
def test_arrow_types_map_to_their_natural_dtype(arrow: pa.DataType, dtype: str | None) -> None:
    assert dtype_of_arrow(arrow) == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_has_an_arrow_type_that_maps_back_to_it(dtype: str) -> None:
    assert dtype_of_arrow(arrow_type(dtype)) == dtype


def test_timestamps_are_stored_as_utc_microseconds() -> None:
    assert arrow_type("datetime") == pa.timestamp("us", tz="UTC")


def test_a_field_with_an_invalid_name_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"field name 'spend 30d' is invalid"):
        Field("spend 30d", "float64")


# -- feature views ------------------------------------------------------------------------------------------
def test_a_feature_view_exposes_its_entities_features_and_fields() -> None:
    view = _view()

    assert view.entity_names == ["customer"]
    assert view.feature_names == ["spend_30d", "orders_30d", "plan"]
    assert view.field("plan") == Field("plan", "string")
    assert view.join_keys({}) == ["customer_id"]


def test_asking_a_view_for_an_unknown_field_lists_its_fields() -> None:
    with pytest.raises(ValidationError, match=r"has no feature 'spend'; it has: spend_30d, orders_30d, plan"):
        _view().field("spend")


def test_entity_names_are_resolved_through_the_given_entities() -> None:
    view = _view(entities=["customer", Entity("store", ["store_id", "customer_id"])])

    assert view.join_keys({"customer": customer}) == ["customer_id", "store_id"]


def test_resolving_an_unknown_entity_name_says_to_declare_it() -> None:
    view = _view(entities=["merchant"])

    with pytest.raises(ValidationError, match=r"refers to unknown entity 'merchant'; declare Entity\('merchant'"):
        view.join_keys({"customer": customer})


def test_a_single_entity_and_a_single_field_need_no_list() -> None:
    view = _view(entities=customer, schema=Field("spend_30d", "float64"))

    assert view.entity_names == ["customer"]
    assert view.feature_names == ["spend_30d"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "customer activity"}, r"feature view name 'customer activity' is invalid"),
        ({"entities": []}, r"'customer_activity' needs at least one entity"),
        ({"entities": [42]}, r"entities must be Entity objects or names, got int"),
        ({"entities": ["cust-omer"]}, r"entity name 'cust-omer' is invalid"),
        ({"entities": [customer, "customer"]}, r"lists an entity twice: \['customer', 'customer'\]"),
        (
            {"source": "data/activity.parquet"},
            r"source must be a ParquetSource, CsvSource or DataFrameSource",
        ),
        ({"schema": []}, r"'customer_activity': schema lists no fields"),
        ({"schema": [("spend", "float64")]}, r"schema entries must be Field objects"),
        (
            {"schema": [Field("plan", "string"), Field("spend", "float64"), Field("plan", "int64")]},
            r"field\(s\) \['plan'\] listed twice",
        ),
        (
            {"schema": [Field("spend", "float64"), Field("event_time", "timestamp")]},
            r"field 'event_time' is also the source's timestamp column",
        ),
        (
            {
                "source": ParquetSource("a.parquet", timestamp="ts", created_timestamp="written"),
                "schema": [Field("written", "timestamp")],
            },
            r"field 'written' is also the source's timestamp column",
        ),
        ({"ttl": 3600}, r"ttl must be a datetime\.timedelta or None, got 3600"),
        ({"ttl": timedelta(0)}, r"ttl must be positive, got 0:00:00"),
        ({"ttl": timedelta(days=-1)}, r"ttl must be positive"),
    ],
)
def test_an_invalid_feature_view_is_refused_with_a_clear_message(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _view(**overrides)


def test_a_feature_view_without_ttl_keeps_values_forever() -> None:
    assert _view(ttl=None).spec()["ttl_seconds"] is None


def test_a_source_needs_its_event_time_column() -> None:
    with pytest.raises(ValidationError, match=r"needs the name of its event-time column"):
        ParquetSource("data/a.parquet", timestamp="")


# -- definition hashes --------------------------------------------------------------------------------------
def test_the_definition_hash_is_stable_across_processes_and_releases() -> None:
    # Pinned: a change here re-versions every definition of every user's project on their next apply.
    assert customer.definition_hash == "277998f868c92b0710752c469429002290e8acacca104f197ba57a96fbf82945"
    assert _view().definition_hash == "b36dd09952e7d39e2bb86bdc0d2627052e68089c0f57eddbf9b60115b9181a99"


def test_the_definition_hash_ignores_the_order_of_tags() -> None:
    a = _view(tags={"team": "growth", "owner": "ml"})
    b = _view(tags={"owner": "ml", "team": "growth"})

    assert a.definition_hash == b.definition_hash
    assert a == b


def test_definition_hash_is_the_sha256_of_the_canonical_spec() -> None:
    assert definition_hash({"b": 1, "a": [1, 2]}) == definition_hash({"a": [1, 2], "b": 1})
    assert definition_hash({"a": 1}) != definition_hash({"a": 2})
    assert len(definition_hash({})) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"ttl": timedelta(days=7)},
        {"ttl": None},
        {"schema": [Field("spend_30d", "int64"), Field("orders_30d", "int64"), Field("plan", "string")]},
        {"schema": [Field("spend_30d", "float64"), Field("orders_30d", "int64")]},
        {"source": ParquetSource("data/other.parquet", timestamp="event_time")},
        {"source": ParquetSource("data/activity.parquet", timestamp="ts")},
        {"source": ParquetSource("data/activity.parquet", timestamp="event_time", created_timestamp="created")},
        {"tags": {"team": "growth"}},
        {"description": "spend and orders"},
        {"online": False},
        {"entities": [Entity("account", ["customer_id"])]},
    ],
)
def test_any_change_to_a_view_changes_its_definition_hash(change: dict[str, Any]) -> None:
    assert _view(**change).definition_hash != _view().definition_hash


def test_aliased_dtypes_give_the_same_definition_hash() -> None:
    schema = [Field("spend_30d", "double"), Field("orders_30d", "int"), Field("plan", "str")]

    assert _view(schema=schema).definition_hash == _view().definition_hash


# -- specs --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    [
        ParquetSource("data/activity.parquet", timestamp="event_time", created_timestamp="created_at"),
        ParquetSource("s3://bucket/activity/", timestamp="ts"),
        CsvSource("data/activity.csv", timestamp="event_time", delimiter=";"),
    ],
)
def test_a_feature_view_round_trips_through_its_json_spec(source: Any) -> None:
    view = _view(source=source, ttl=timedelta(hours=36, microseconds=500), description="d", online=False)

    again = FeatureView.from_spec(json.loads(json.dumps(view.spec())))

    assert again.spec() == view.spec()
    assert again.definition_hash == view.definition_hash
    assert again.ttl == view.ttl
    assert again.source == view.source
    assert type(again.source) is type(view.source)
    assert again.entities == ["customer"]


def test_a_dataframe_view_rebuilt_from_its_spec_knows_its_columns_but_not_its_rows() -> None:
    df = pd.DataFrame({"customer_id": [1], "event_time": pd.to_datetime(["2024-01-01"], utc=True), "spend": [1.0]})
    view = _view(source=DataFrameSource(df), schema=[Field("spend", "float64")])

    again = FeatureView.from_spec(view.spec())

    assert again.definition_hash == view.definition_hash
    with pytest.raises(ValidationError, match=r"in-memory DataFrame defined in another process"):
        again.source.read()
