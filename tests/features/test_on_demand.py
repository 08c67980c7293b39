"""On-demand feature views: declaration, validation, spec and hash, apply, discovery and the registry."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

import keel
from keel import (
    DataFrameSource,
    Entity,
    FeatureView,
    Field,
    NotFoundError,
    ParquetSource,
    RequestSource,
    ValidationError,
    on_demand_feature_view,
)
from keel.definitions import Definitions
from keel.definitions._discovery import discover
from keel.features import OnDemandFeatureView

customer = Entity("customer", join_keys=["customer_id"])
activity = FeatureView(
    "customer_activity",
    entities=[customer],
    source=ParquetSource("data/activity.parquet", timestamp="event_time"),
    schema=[Field("spend_30d", "float64"), Field("orders_30d", "int64"), Field("plan", "string")],
    ttl=timedelta(days=30),
)
profile = FeatureView(
    "customer_profile",
    entities=[customer],
    source=ParquetSource("data/profile.parquet", timestamp="event_time"),
    schema=[Field("age", "int64"), Field("plan", "string")],
)
cart = RequestSource("cart", schema=[Field("cart_value", "float64")])
RATIOS = [Field("spend_per_order", "float64"), Field("cart_to_spend", "float64")]


@on_demand_feature_view(
    sources=[activity, cart], inputs=["customer_activity:spend_30d", "customer_activity:orders_30d"], schema=RATIOS
)
def basket(df: pd.DataFrame) -> pd.DataFrame:
    """Spend per order, and the cart's value against the month's spend."""
    return pd.DataFrame(
        {
            "spend_per_order": df["spend_30d"] / df["orders_30d"].clip(lower=1),
            "cart_to_spend": df["cart_value"] / (df["spend_30d"] + 1),
        }
    )


def _identity(df: pd.DataFrame) -> pd.DataFrame:
    return df


def _declare(**overrides: Any) -> OnDemandFeatureView:
    args: dict[str, Any] = {"sources": [activity, cart], "schema": [Field("ratio", "float64")]}
    args.update(overrides)
    function = args.pop("function", _identity)
    return on_demand_feature_view(**args)(function)


# -- declaration ---------------------------------------------------------------------------------------------
def test_the_decorator_makes_a_definition_named_after_the_function() -> None:
    assert isinstance(basket, OnDemandFeatureView)
    assert isinstance(basket, keel.features.Definition)
    assert (basket.kind, basket.name) == ("on_demand_feature_view", "basket")
    assert basket.feature_names == ["spend_per_order", "cart_to_spend"]
    assert basket.view_names == ["customer_activity"]
    assert list(basket.request_fields) == ["cart_value"]
    assert basket.description == "Spend per order, and the cart's value against the month's spend."


def test_the_decorated_object_is_still_the_plain_function() -> None:
    frame = pd.DataFrame({"spend_30d": [100.0, 9.0], "orders_30d": [4, 0], "cart_value": [30.0, 5.0]})

    out = basket(frame)

    assert out.to_dict("list") == {"spend_per_order": [25.0, 9.0], "cart_to_spend": [30.0 / 101, 0.5]}
    assert basket.__name__ == "basket"
    assert basket.__doc__ == "Spend per order, and the cart's value against the month's spend."
    assert basket.__wrapped__ is basket.function  # type: ignore[attr-defined]


def test_a_name_description_and_tags_can_be_given() -> None:
    odfv = _declare(name="ratio_view", description="a ratio", tags={"team": "growth"})

    assert odfv.name == "ratio_view"
    assert odfv.spec()["description"] == "a ratio"
    assert odfv.spec()["tags"] == {"team": "growth"}


def test_inputs_default_to_every_feature_of_the_views_listed() -> None:
    odfv = _declare()

    assert [str(r) for r in odfv.inputs] == [
        "customer_activity:spend_30d",
        "customer_activity:orders_30d",
        "customer_activity:plan",
    ]


def test_a_view_star_input_is_expanded_and_repeats_are_dropped() -> None:
    odfv = _declare(inputs=["customer_activity:*", "customer_activity:plan"])

    assert [r.feature for r in odfv.inputs] == ["spend_30d", "orders_30d", "plan"]


def test_a_view_named_by_a_string_is_resolved_later() -> None:
    odfv = _declare(sources=["customer_activity", cart], inputs=None)

    assert [str(r) for r in odfv.inputs] == ["customer_activity:*"]
    assert odfv.resolve_inputs(lambda _: ["spend_30d", "plan"]) == [
        ("customer_activity", "spend_30d"),
        ("customer_activity", "plan"),
    ]


def test_an_on_demand_view_may_read_request_fields_only() -> None:
    odfv = _declare(sources=cart, schema=Field("doubled", "float64"))

    assert odfv.view_names == []
    assert odfv.inputs == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sources": []}, r"needs at least one source"),
        ({"sources": [activity, 3]}, r"sources must be FeatureView objects, view names or RequestSource objects"),
        ({"sources": [activity, activity]}, r"lists source\(s\) \['customer_activity'\] twice"),
        ({"sources": ["bad name"]}, r"source name 'bad name' is invalid"),
        ({"schema": []}, r"schema lists no fields"),
        ({"schema": ["ratio"]}, r"schema entries must be Field objects"),
        ({"schema": [Field("r", "float64"), Field("r", "int64")]}, r"field\(s\) \['r'\] listed twice"),
        (
            {"inputs": ["customer_profile:age"]},
            r"input 'customer_profile:age' names feature view 'customer_profile', which is not among its sources",
        ),
        (
            {"inputs": ["customer_activity:nope"]},
            r"feature view 'customer_activity' has no feature 'nope'; it has: spend_30d, orders_30d, plan",
        ),
        ({"inputs": ["customer_activity@2:spend_30d"]}, r"input 'customer_activity@2:spend_30d' pins a version"),
        ({"inputs": ["cart:cart_value"]}, r"request fields are always passed whole"),
        ({"inputs": ["spend_30d"]}, r"malformed feature reference 'spend_30d'"),
        (
            {"sources": [activity, profile, cart], "inputs": ["customer_activity:spend_30d"]},
            r"source view\(s\) \['customer_profile'\] have no feature in inputs",
        ),
        (
            {"sources": [activity, profile]},
            r"input feature 'plan' comes from both 'customer_activity' and 'customer_profile'; .* list only one",
        ),
        (
            {"schema": [Field("spend_30d", "float64")]},
            r"output 'spend_30d' has the name of its input feature customer_activity:spend_30d",
        ),
        ({"schema": [Field("cart_value", "float64")]}, r"output 'cart_value' has the name of its request field"),
        (
            {"sources": [activity, RequestSource("r", [Field("plan", "string")])]},
            r"request field 'plan' has the name of feature customer_activity:plan",
        ),
        (
            {"sources": [cart, RequestSource("again", [Field("cart_value", "float64")])]},
            r"two request sources declare field 'cart_value'",
        ),
        ({"name": "1basket"}, r"on-demand feature view name '1basket' is invalid"),
        ({"name": "__keel_x"}, r"is reserved"),
    ],
)
def test_a_bad_declaration_is_refused_with_a_clear_error(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _declare(**overrides)


def test_a_lambda_needs_a_name() -> None:
    with pytest.raises(ValidationError, match=r"a lambda needs a name"):
        _declare(function=lambda df: df)
    assert _declare(function=lambda df: df, name="passthrough").name == "passthrough"


def test_only_a_plain_function_of_one_argument_is_accepted() -> None:
    def two(df: pd.DataFrame, extra: int) -> pd.DataFrame:
        return df

    with pytest.raises(ValidationError, match=r"must take exactly one argument .* two\(df: 'pd.DataFrame', extra"):
        _declare(function=two)

    class Class:
        pass

    async def coroutine(df: pd.DataFrame) -> pd.DataFrame:
        return df

    with pytest.raises(ValidationError, match=r"expected a plain function DataFrame -> DataFrame, got a type"):
        _declare(function=Class, name="x")
    with pytest.raises(ValidationError, match=r"got a coroutine function"):
        _declare(function=coroutine)


def test_a_request_source_is_validated() -> None:
    with pytest.raises(ValidationError, match=r"request source name 'a b' is invalid"):
        RequestSource("a b", [Field("x", "float64")])
    with pytest.raises(ValidationError, match=r"request source 'cart': schema lists no fields"):
        RequestSource("cart", [])
    assert RequestSource("cart", Field("v", "float64")).field_names == ["v"]
    assert RequestSource("cart", [Field("v", "float")]) == RequestSource("cart", [Field("v", "float64")])


# -- spec and definition hash -----------------------------------------------------------------------------------
def test_the_spec_holds_sources_inputs_schema_and_the_functions_source_code() -> None:
    spec = basket.spec()

    assert json.loads(json.dumps(spec)) == spec
    assert spec["sources"] == [
        {"kind": "feature_view", "name": "customer_activity"},
        {
            "kind": "request",
            "name": "cart",
            "schema": [{"name": "cart_value", "dtype": "float64", "description": ""}],
            "description": "",
        },
    ]
    assert spec["inputs"] == ["customer_activity:spend_30d", "customer_activity:orders_30d"]
    assert [f["name"] for f in spec["schema"]] == ["spend_per_order", "cart_to_spend"]
    source = spec["function"]["source"]
    assert spec["function"]["name"] == "basket"
    assert source.startswith("def basket(df: pd.DataFrame) -> pd.DataFrame:\n")  # dedented, no decorator
    assert '"cart_to_spend": df["cart_value"] / (df["spend_30d"] + 1),' in source


def test_a_nested_function_is_dedented() -> None:
    def make() -> OnDemandFeatureView:
        @on_demand_feature_view(sources=[cart], schema=[Field("doubled", "float64")])
        def doubled(df: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({"doubled": df["cart_value"] * 2})

        return doubled

    assert make().spec()["function"]["source"] == (
        'def doubled(df: pd.DataFrame) -> pd.DataFrame:\n    return pd.DataFrame({"doubled": df["cart_value"] * 2})\n'
    )


MODULE = """\
import pandas as pd
from keel import Field, RequestSource, on_demand_feature_view

cart = RequestSource("cart", schema=[Field("cart_value", "float64")])


@on_demand_feature_view({decorator_args})
def doubled(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({{"doubled": df["cart_value"] * {factor}}})
"""


def _hash_of(
    root: Path, *, factor: str = "2", decorator_args: str = 'sources=[cart], schema=[Field("doubled", "float64")]'
):
    (root / "odfv.py").write_text(MODULE.format(factor=factor, decorator_args=decorator_args))
    (found,) = [d for d in discover(root) if isinstance(d, OnDemandFeatureView)]
    return found.definition_hash


def test_a_changed_function_is_a_changed_definition(project_dir: Path) -> None:
    before = _hash_of(project_dir)

    assert _hash_of(project_dir) == before
    assert _hash_of(project_dir, factor="3") != before
    assert _hash_of(project_dir, factor="(2)") != before  # the source is the definition
    reformatted = 'sources=[cart],\n    schema=[Field("doubled", "float64")],\n'
    assert _hash_of(project_dir, decorator_args=reformatted) == before  # formatting the decorator is not


# -- compute: the checks both retrieval paths rely on ------------------------------------------------------------
def _compute(odfv: OnDemandFeatureView, cart_values: list[Any]) -> dict[str, list[Any]]:
    out = odfv.compute({}, {}, {"cart_value": cart_values}, rows=len(cart_values), where="entity rows")
    return {name: array.to_pylist() for name, array in out.items()}


def _on_cart(function: Any, *schema: Field) -> OnDemandFeatureView:
    return on_demand_feature_view(sources=[cart], schema=list(schema or [Field("out", "float64")]), name="view")(
        function
    )


def test_compute_casts_outputs_to_the_declared_dtypes() -> None:
    def typed(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "as_float": [1, 2],  # integers declared float64
                "as_int": [3.0, None],  # integral floats declared int64
                "nan_is_null": [float("nan"), 0.5],
                "extra": ["ignored", "too"],
            }
        )

    odfv = _on_cart(typed, Field("as_float", "float64"), Field("as_int", "int64"), Field("nan_is_null", "float64"))

    out = odfv.compute({}, {}, {"cart_value": [1.0, 2.0]}, rows=2, where="entity rows")

    assert {k: v.type for k, v in out.items()} == {
        "as_float": pa.float64(),
        "as_int": pa.int64(),
        "nan_is_null": pa.float64(),
    }
    assert {k: v.to_pylist() for k, v in out.items()} == {
        "as_float": [1.0, 2.0],
        "as_int": [3, None],
        "nan_is_null": [None, 0.5],
    }


def test_compute_realigns_rows_the_function_reordered() -> None:
    odfv = _on_cart(lambda df: pd.DataFrame({"out": df["cart_value"]}).sort_values("out"))

    assert _compute(odfv, [3.0, 1.0, 2.0]) == {"out": [3.0, 1.0, 2.0]}


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (lambda df: df["cart_value"], r"its function returned Series; it must return a pandas DataFrame"),
        (lambda df: pd.DataFrame({"other": df["cart_value"]}), r"returned no column 'out', declared in its schema"),
        (lambda df: pd.DataFrame({"out": [1.0]}), r"returned 1 rows for 2 input rows"),
        (lambda df: pd.DataFrame({"out": ["a", "b"]}), r"output column 'out' holds string values, not float64"),
        (
            lambda df: pd.DataFrame({"out": [1.0, 2.0]}, index=[7, 8]),
            r"returned rows with an index that is not the input's",
        ),
        (lambda df: df["missing"], r"its function raised KeyError: 'missing'"),
    ],
)
def test_compute_refuses_an_output_that_breaks_the_schema(function: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=rf"on-demand feature view 'view': .*{message}"):
        _compute(_on_cart(function), [1.0, 2.0])


def test_compute_names_the_row_of_a_fractional_value_declared_int64() -> None:
    odfv = _on_cart(lambda df: pd.DataFrame({"out": [1.0, 2.5]}), Field("out", "int64"))

    with pytest.raises(ValidationError, match=r"output column 'out': row 1 has 2.5, which is not an integer") as info:
        _compute(odfv, [1.0, 2.0])
    assert (info.value.field, info.value.row) == ("out", 1)


def test_compute_names_the_row_and_field_of_a_bad_request_value() -> None:
    odfv = _on_cart(lambda df: pd.DataFrame({"out": df["cart_value"]}))

    with pytest.raises(ValidationError, match=r"request field 'cart_value' .*: row 1 has 'ten', which is not a number"):
        _compute(odfv, [1.0, "ten"])
    with pytest.raises(ValidationError, match=r"request field 'cart_value' of .* holds bool values, not float64"):
        _compute(odfv, [True, False])


def test_compute_does_not_call_the_function_on_no_rows() -> None:
    def fail(df: pd.DataFrame) -> pd.DataFrame:
        raise AssertionError("called")

    out = _on_cart(fail).compute({}, {}, {"cart_value": []}, rows=0, where="entity rows")

    assert out["out"].type == pa.float64() and len(out["out"]) == 0


# -- apply ---------------------------------------------------------------------------------------------------------
def _activity_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1],
            "event_time": pd.to_datetime(["2024-01-01"], utc=True),
            "spend_30d": [9.0],
            "orders_30d": [1],
            "plan": ["basic"],
        }
    )


@pytest.fixture
def project(project_dir: Path) -> Iterator[Any]:
    (project_dir / "data").mkdir()
    _activity_frame().to_parquet(project_dir / "data" / "activity.parquet")
    with keel.Project.open(project_dir) as p:
        yield p


def _summary(plan: Any) -> list[tuple[str, str, str, int]]:
    return [(i.kind, i.name, i.action, i.version) for i in plan.items]


def test_apply_records_an_on_demand_view_with_the_views_it_reads(project: Any) -> None:
    plan = project.apply([basket])

    assert _summary(plan) == [
        ("entity", "customer", "add", 1),
        ("feature_view", "customer_activity", "add", 1),
        ("on_demand_feature_view", "basket", "add", 1),
    ]
    assert "+ on demand feature view basket v1" in str(plan)
    record = project.catalog.current_definitions("on_demand_feature_view")[("on_demand_feature_view", "basket")]
    assert record.spec == basket.spec() and record.hash == basket.definition_hash
    assert project.definitions.on_demand_feature_view("basket")[0] is basket


def test_a_changed_function_makes_version_2(project: Any) -> None:
    project.apply([basket])

    @on_demand_feature_view(sources=[activity, cart], schema=RATIOS, name="basket")
    def changed(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"spend_per_order": df["spend_30d"], "cart_to_spend": df["cart_value"]})

    plan = project.apply([changed])

    assert [(i.name, i.action, i.version, i.changes) for i in plan.changed] == [
        ("basket", "change", 2, ("description", "function", "inputs"))
    ]
    assert not project.apply([changed]).has_changes


def test_apply_refuses_an_on_demand_view_reading_an_unregistered_view(project: Any) -> None:
    odfv = _declare(sources=["customer_activity", cart])

    with pytest.raises(ValidationError, match=r"reads feature view 'customer_activity', which is not registered"):
        project.apply([odfv])


def test_a_view_named_by_a_string_is_checked_against_the_registered_view(project: Any) -> None:
    project.apply([activity])

    with pytest.raises(ValidationError, match=r"reads 'customer_activity:nope', but feature view 'customer_activity'"):
        project.apply([_declare(sources=["customer_activity", cart], inputs=["customer_activity:nope"])])
    plan = project.apply([_declare(sources=["customer_activity", cart])])
    assert [i.name for i in plan.added] == ["_identity"]


def test_apply_refuses_a_view_change_that_breaks_a_registered_on_demand_view(project: Any) -> None:
    project.apply([basket])
    shrunk = FeatureView(
        "customer_activity",
        entities=[customer],
        source=ParquetSource("data/activity.parquet", timestamp="event_time"),
        schema=[Field("spend_30d", "float64")],
        ttl=timedelta(days=30),
    )

    with pytest.raises(ValidationError, match=r"'basket' reads 'customer_activity:orders_30d', but feature view"):
        project.apply([shrunk])


def test_apply_refuses_an_on_demand_view_named_like_a_feature_view(project: Any) -> None:
    odfv = _declare(name="customer_activity")

    with pytest.raises(ValidationError, match=r"both called 'customer_activity'"):
        project.apply([odfv])


def test_apply_refuses_an_output_named_like_a_join_key(project: Any) -> None:
    odfv = _declare(schema=[Field("customer_id", "int64")])

    with pytest.raises(ValidationError, match=r"output 'customer_id' has the name of a join key"):
        project.apply([odfv])


# -- discovery, full apply and the registry ----------------------------------------------------------------------
FEATURES = """\
from datetime import timedelta

import pandas as pd
from keel import Entity, FeatureView, Field, ParquetSource, RequestSource, on_demand_feature_view

customer = Entity("customer", join_keys=["customer_id"])
activity = FeatureView(
    "customer_activity", entities=[customer], ttl=timedelta(days=30),
    source=ParquetSource("data/activity.parquet", timestamp="event_time"),
    schema=[Field("spend_30d", "float64"), Field("orders_30d", "int64"), Field("plan", "string")],
)
cart = RequestSource("cart", schema=[Field("cart_value", "float64")])


@on_demand_feature_view(sources=[activity, cart], schema=[Field("cart_to_spend", "float64")])
def basket(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({{"cart_to_spend": df["cart_value"] / (df["spend_30d"] + {offset})}})
"""


def _write_features(root: Path, offset: str = "1") -> None:
    (root / "features.py").write_text(FEATURES.format(offset=offset))
    if not (root / "data").exists():
        (root / "data").mkdir()
        _activity_frame().to_parquet(root / "data" / "activity.parquet")


def _forget(module: str) -> None:
    """Make this process one that never imported the project's module."""
    sys.modules.pop(module, None)


def test_discovery_and_apply_find_on_demand_views(project: Any, project_dir: Path) -> None:
    _write_features(project_dir)

    plan = project.apply()

    assert _summary(plan)[-1] == ("on_demand_feature_view", "basket", "add", 1)
    (project_dir / "features.py").write_text(FEATURES.split("cart = ")[0])
    assert _summary(project.apply())[-1] == ("on_demand_feature_view", "basket", "remove", 2)


def test_apply_refuses_to_remove_a_view_an_on_demand_view_still_reads(project: Any, project_dir: Path) -> None:
    _write_features(project_dir)
    project.apply()
    (project_dir / "features.py").write_text(
        "import pandas as pd\n"
        "from keel import Field, RequestSource, on_demand_feature_view\n"
        "cart = RequestSource('cart', schema=[Field('cart_value', 'float64')])\n"
        "basket = on_demand_feature_view(\n"
        "    sources=['customer_activity', cart], schema=[Field('cart_to_spend', 'float64')], name='basket'\n"
        ")(lambda df: df)\n"
    )

    with pytest.raises(ValidationError, match=r"reads feature view 'customer_activity', which this apply removes"):
        project.apply()


def test_a_fresh_project_object_finds_the_live_function_in_the_imported_modules(project_dir: Path) -> None:
    _write_features(project_dir)
    with keel.Project.open(project_dir) as first:
        first.apply()
    with keel.Project.open(project_dir) as second:
        odfv, record = second.definitions.on_demand_feature_view("basket")

    assert record.version == 1 and odfv.function.__module__ == "features"


def test_a_process_that_never_imported_the_project_imports_it_to_find_the_function(project_dir: Path) -> None:
    _write_features(project_dir)
    with keel.Project.open(project_dir) as p:
        p.apply()
    _forget("features")

    with keel.Project.open(project_dir) as fresh:
        odfv = fresh.definitions.find_on_demand("basket")

    assert odfv is not None and odfv.name == "basket"
    assert "features" in sys.modules


def test_a_changed_but_unapplied_function_is_refused_naming_what_to_do(project_dir: Path) -> None:
    _write_features(project_dir)
    with keel.Project.open(project_dir) as p:
        p.apply()
    _write_features(project_dir, offset="2")
    _forget("features")

    with (
        keel.Project.open(project_dir) as fresh,
        pytest.raises(
            ValidationError,
            match=r"'basket' in the project's modules differs from its registered definition v1 "
            r"\(it differs in: function\); run `keel apply`",
        ),
    ):
        fresh.definitions.on_demand_feature_view("basket")


def test_a_registered_view_no_module_declares_any_more_is_a_clear_error(project_dir: Path) -> None:
    _write_features(project_dir)
    with keel.Project.open(project_dir) as p:
        p.apply()
    (project_dir / "features.py").unlink()
    _forget("features")

    with (
        keel.Project.open(project_dir) as fresh,
        pytest.raises(
            NotFoundError, match=r"'basket' is registered \(v1\) but no module of the project .* declares it"
        ),
    ):
        fresh.definitions.on_demand_feature_view("basket")


def test_a_registry_without_a_project_folder_says_the_function_cannot_be_rebuilt(project: Any) -> None:
    project.apply([basket])

    with pytest.raises(NotFoundError, match=r"holds a Python function, which cannot be rebuilt from the catalog"):
        Definitions(project.catalog).on_demand_feature_view("basket")


def test_a_module_reading_features_when_imported_is_refused_rather_than_recursing(project_dir: Path) -> None:
    _write_features(project_dir)
    with keel.Project.open(project_dir) as p:
        p.apply()
    (project_dir / "a_script.py").write_text(
        f"import keel\nkeel.Project.open({str(project_dir)!r}).definitions.on_demand_feature_view('basket')\n"
    )
    _forget("features")

    with (
        keel.Project.open(project_dir) as fresh,
        pytest.raises(ValidationError, match=r"a_script.py .*while it was importing them: a module runs Keel code"),
    ):
        fresh.definitions.on_demand_feature_view("basket")


def test_another_process_reads_on_demand_features_without_applying(project_dir: Path) -> None:
    _write_features(project_dir)
    with keel.Project.open(project_dir) as p:
        p.apply()
        p.ingest("customer_activity")
    script = textwrap.dedent(
        f"""
        import pandas as pd, keel
        with keel.Project.open({str(project_dir)!r}) as p:
            entities = pd.DataFrame({{"customer_id": [1], "ts": pd.to_datetime(["2024-01-02"], utc=True),
                                     "cart_value": [30.0]}})
            print(p.historical_features(entities, ["basket:cart_to_spend"])["cart_to_spend"].tolist())
        """
    )

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/", check=False)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[3.0]"


def test_a_view_with_an_in_memory_source_read_by_an_on_demand_view_is_kept_live(project: Any) -> None:
    frame = pd.DataFrame({"customer_id": [1], "event_time": pd.to_datetime(["2024-01-01"], utc=True), "x": [1.0]})
    memory = FeatureView("memory", entities=[customer], source=DataFrameSource(frame), schema=[Field("x", "float64")])
    odfv = _declare(sources=[memory], schema=[Field("y", "float64")])

    project.apply([odfv])

    assert project.ingest("memory").version.version == 1
