"""Feature references: ``view:feature``, ``view:*``, ``view@3:feature``."""

from __future__ import annotations

from typing import Any

import pytest

from keel.errors import ValidationError
from keel.features import FeatureRef, parse_refs


@pytest.mark.parametrize(
    ("text", "view", "feature", "version"),
    [
        ("customer_activity:spend_30d", "customer_activity", "spend_30d", None),
        ("customer_activity:*", "customer_activity", "*", None),
        ("customer_activity@3:spend_30d", "customer_activity", "spend_30d", 3),
        ("customer_activity@12:*", "customer_activity", "*", 12),
        ("customer_activity@latest:plan", "customer_activity", "plan", None),
        ("  _v2:_f  ", "_v2", "_f", None),
    ],
)
def test_a_reference_is_parsed_into_view_feature_and_version(
    text: str, view: str, feature: str, version: int | None
) -> None:
    assert FeatureRef.parse(text) == FeatureRef(view, feature, version)


@pytest.mark.parametrize(
    "text", ["customer_activity:spend_30d", "customer_activity:*", "customer_activity@3:spend_30d"]
)
def test_a_reference_prints_as_it_is_written(text: str) -> None:
    assert str(FeatureRef.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "customer_activity",
        "customer_activity:",
        ":spend_30d",
        "customer_activity:spend:30d",
        "customer_activity.spend_30d",
        "1view:spend",
        "view:spend-30d",
        "view@:spend",
        "view@x:spend",
        "view@-1:spend",
        "view@1.5:spend",
        "view@3",
        "view:sp end",
        "view:**",
    ],
)
def test_a_malformed_reference_is_refused_naming_it_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        FeatureRef.parse(text)

    assert f"malformed feature reference {text!r}" in str(info.value)
    assert "expected 'view:feature', 'view:*' or 'view@3:feature'" in str(info.value)
    assert info.value.field == text


def test_version_zero_is_refused_because_versions_start_at_1() -> None:
    with pytest.raises(ValidationError, match=r"'view@0:spend': versions are numbered from 1"):
        FeatureRef.parse("view@0:spend")


@pytest.mark.parametrize("value", [None, 3, ["view:f"]])
def test_a_reference_that_is_not_a_string_is_refused(value: Any) -> None:
    with pytest.raises(ValidationError, match="a feature reference must be a string"):
        FeatureRef.parse(value)


def test_parse_refs_parses_a_list_or_a_single_string() -> None:
    assert parse_refs(["a:x", "b@2:*"]) == [FeatureRef("a", "x"), FeatureRef("b", "*", 2)]
    assert parse_refs(("a:x",)) == [FeatureRef("a", "x")]
    assert parse_refs("a:x") == [FeatureRef("a", "x")]


def test_parse_refs_refuses_an_empty_list() -> None:
    with pytest.raises(ValidationError, match="no features requested; pass at least one 'view:feature'"):
        parse_refs([])


def test_parse_refs_names_the_malformed_entry() -> None:
    with pytest.raises(ValidationError, match=r"malformed feature reference 'b-x'"):
        parse_refs(["a:x", "b-x"])
