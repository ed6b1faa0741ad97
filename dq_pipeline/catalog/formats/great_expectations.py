"""Great Expectations expectation suites (JSON): ``expectation_suite_name`` (0.x) or ``name`` (1.x) and an
``expectations`` list whose items have ``expectation_type`` (0.x) or ``type`` (1.x) and ``kwargs``.

One entry per expectation (kind `rule`), keyed ``<suite>/<expectation type>[/<column>]/<hash of kwargs>``
and described in words: "expect_column_values_to_not_be_null" on column passenger_count reads "Values
in column passenger_count must not be null"; about forty common types have a wording, any other reads
as its type in words plus its arguments. `mostly` and `row_condition` are worded too; the notes
(`meta.notes` as text, a list or ``{format, content}``, and 1.x `notes`), a 1.x `description` and
`severity` are part of the text; the suite's data asset and GE version are in the payload.

Ignores: suite-level `meta` other than the GE version and data asset name, citations, `rendered_content`,
`result_format`/`include_config`/`catch_exceptions` arguments.
Refuses, naming the record path (``expectations[3]``): duplicate JSON keys, truncated JSON, a suite
without a name, `expectations` that is not a list of objects, an expectation without a type or whose
`kwargs` is not an object, and the same expectation (type and kwargs) listed twice, nesting deeper
than 100 levels.
Reads only the suite file (no checkpoint, no data). Warns: an embedded text cut to its first 8,192 characters or a payload over 1 MiB (see builder: the payload is kept whole).
Duplicate keys: refused in any JSON object (RFC 8259 leaves their meaning undefined).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..builder import EntryCollector
from ..entry import CatalogError, Entry
from . import Format
from .toolkit.documents import load_document
from .toolkit.html_text import collapse
from .toolkit.paths import at
from .toolkit.sniffing import outline
from .toolkit.values import Bad, items, jsonable, mapping, scalar_text, short_hash, type_name
from .toolkit.wording import bounds, compose_text, show

_NOT_MEANING = frozenset({"result_format", "include_config", "catch_exceptions", "meta", "condition_parser"})


def detect(head: str) -> bool:
    shape = outline(head)
    if shape.root != "object" or not shape.has("", "expectations"):
        return False
    return shape.has("", "expectation_suite_name") or (
        shape.has("expectations.item", "expectation_type", "type")
        and shape.has("expectations.item", "kwargs")
    )


def _range(kwargs: dict[str, Any]) -> str:
    return bounds(
        kwargs.get("min_value"),
        kwargs.get("max_value"),
        strict_low=kwargs.get("strict_min") is True,
        strict_high=kwargs.get("strict_max") is True,
    )


def _values(value: Any) -> str:
    return "(no values given)" if value is None else show(value)


def _quantiles(kwargs: dict[str, Any]) -> str:
    ranges = kwargs.get("quantile_ranges")
    if not isinstance(ranges, dict):
        return show(ranges)
    quantiles, value_ranges = ranges.get("quantiles") or [], ranges.get("value_ranges") or []
    parts = []
    for q, r in zip(quantiles, value_ranges, strict=False):
        low, high = (r + [None, None])[:2] if isinstance(r, list) else (None, None)
        label = f"{q * 100:g}%" if isinstance(q, (int, float)) else show(q)
        parts.append(f"{label}: {bounds(low, high)}")
    return "; ".join(parts)


# Each wording takes (column, kwargs); "Values in column X" etc. are built here from the column.
Wording = Callable[[str, dict[str, Any]], str]


def _col(column: str) -> str:
    return f"Values in column {column}"


WORDINGS: dict[str, Wording] = {
    "expect_column_to_exist": lambda c, k: f"Column {c} must exist",
    "expect_column_values_to_not_be_null": lambda c, k: f"{_col(c)} must not be null",
    "expect_column_values_to_be_null": lambda c, k: f"{_col(c)} must be null",
    "expect_column_values_to_be_unique": lambda c, k: f"{_col(c)} must be unique",
    "expect_column_values_to_be_in_set": lambda c, k: (
        f"{_col(c)} must be one of: {_values(k.get('value_set'))}"
    ),
    "expect_column_values_to_not_be_in_set": lambda c, k: (
        f"{_col(c)} must not be any of: {_values(k.get('value_set'))}"
    ),
    "expect_column_values_to_be_between": lambda c, k: f"{_col(c)} must be {_range(k)}",
    "expect_column_value_lengths_to_be_between": lambda c, k: (
        f"Value lengths in column {c} must be {_range(k)}"
    ),
    "expect_column_value_lengths_to_equal": lambda c, k: (
        f"Value lengths in column {c} must be exactly {show(k.get('value'))}"
    ),
    "expect_column_values_to_match_regex": lambda c, k: (
        f"{_col(c)} must match the regular expression {show(k.get('regex'))}"
    ),
    "expect_column_values_to_not_match_regex": lambda c, k: (
        f"{_col(c)} must not match the regular expression {show(k.get('regex'))}"
    ),
    "expect_column_values_to_match_regex_list": lambda c, k: (
        f"{_col(c)} must match {k.get('match_on') or 'any'} of the regular expressions: {_values(k.get('regex_list'))}"
    ),
    "expect_column_values_to_not_match_regex_list": lambda c, k: (
        f"{_col(c)} must match none of the regular expressions: {_values(k.get('regex_list'))}"
    ),
    "expect_column_values_to_match_like_pattern": lambda c, k: (
        f"{_col(c)} must match the LIKE pattern {show(k.get('like_pattern'))}"
    ),
    "expect_column_values_to_not_match_like_pattern": lambda c, k: (
        f"{_col(c)} must not match the LIKE pattern {show(k.get('like_pattern'))}"
    ),
    "expect_column_values_to_match_strftime_format": lambda c, k: (
        f"{_col(c)} must be dates in the format {show(k.get('strftime_format'))}"
    ),
    "expect_column_values_to_be_dateutil_parseable": lambda c, k: f"{_col(c)} must be parseable as dates",
    "expect_column_values_to_be_json_parseable": lambda c, k: f"{_col(c)} must be valid JSON",
    "expect_column_values_to_match_json_schema": lambda c, k: (
        f"{_col(c)} must match the JSON schema {show(k.get('json_schema'))}"
    ),
    "expect_column_values_to_be_of_type": lambda c, k: f"{_col(c)} must be of type {show(k.get('type_'))}",
    "expect_column_values_to_be_in_type_list": lambda c, k: (
        f"{_col(c)} must be of one of the types: {_values(k.get('type_list'))}"
    ),
    "expect_column_values_to_be_increasing": lambda c, k: (
        f"{_col(c)} must be {'strictly ' if k.get('strictly') else ''}increasing"
    ),
    "expect_column_values_to_be_decreasing": lambda c, k: (
        f"{_col(c)} must be {'strictly ' if k.get('strictly') else ''}decreasing"
    ),
    "expect_column_min_to_be_between": lambda c, k: f"The minimum of column {c} must be {_range(k)}",
    "expect_column_max_to_be_between": lambda c, k: f"The maximum of column {c} must be {_range(k)}",
    "expect_column_mean_to_be_between": lambda c, k: f"The mean of column {c} must be {_range(k)}",
    "expect_column_median_to_be_between": lambda c, k: f"The median of column {c} must be {_range(k)}",
    "expect_column_sum_to_be_between": lambda c, k: f"The sum of column {c} must be {_range(k)}",
    "expect_column_stdev_to_be_between": lambda c, k: (
        f"The standard deviation of column {c} must be {_range(k)}"
    ),
    "expect_column_unique_value_count_to_be_between": lambda c, k: (
        f"The number of distinct values in column {c} must be {_range(k)}"
    ),
    "expect_column_proportion_of_unique_values_to_be_between": lambda c, k: (
        f"The proportion of distinct values in column {c} must be {_range(k)}"
    ),
    "expect_column_proportion_of_non_null_values_to_be_between": lambda c, k: (
        f"The proportion of non-null values in column {c} must be {_range(k)}"
    ),
    "expect_column_most_common_value_to_be_in_set": lambda c, k: (
        f"The most common value of column {c} must be one of: {_values(k.get('value_set'))}"
    ),
    "expect_column_distinct_values_to_be_in_set": lambda c, k: (
        f"The distinct values of column {c} must all be in: {_values(k.get('value_set'))}"
    ),
    "expect_column_distinct_values_to_contain_set": lambda c, k: (
        f"The distinct values of column {c} must include: {_values(k.get('value_set'))}"
    ),
    "expect_column_distinct_values_to_equal_set": lambda c, k: (
        f"The distinct values of column {c} must be exactly: {_values(k.get('value_set'))}"
    ),
    "expect_column_quantile_values_to_be_between": lambda c, k: (
        f"The quantiles of column {c} must be: {_quantiles(k)}"
    ),
    "expect_column_pair_values_to_be_equal": lambda c, k: (
        f"Values in columns {k.get('column_A')} and {k.get('column_B')} must be equal"
    ),
    "expect_column_pair_values_a_to_be_greater_than_b": lambda c, k: (
        f"Values in column {k.get('column_A')} must be greater than {'or equal to ' if k.get('or_equal') else ''}those in column {k.get('column_B')}"
    ),
    "expect_compound_columns_to_be_unique": lambda c, k: (
        f"The combination of columns {_values(k.get('column_list'))} must be unique"
    ),
    "expect_select_column_values_to_be_unique_within_record": lambda c, k: (
        f"Within each row, the values of columns {_values(k.get('column_list'))} must be unique"
    ),
    "expect_multicolumn_sum_to_equal": lambda c, k: (
        f"The sum of columns {_values(k.get('column_list'))} must equal {show(k.get('sum_total'))} in each row"
    ),
    "expect_table_row_count_to_be_between": lambda c, k: f"The table must have {_range(k)} rows",
    "expect_table_row_count_to_equal": lambda c, k: (
        f"The table must have exactly {show(k.get('value'))} rows"
    ),
    "expect_table_row_count_to_equal_other_table": lambda c, k: (
        f"The table must have as many rows as table {show(k.get('other_table_name'))}"
    ),
    "expect_table_column_count_to_equal": lambda c, k: (
        f"The table must have exactly {show(k.get('value'))} columns"
    ),
    "expect_table_column_count_to_be_between": lambda c, k: f"The table must have {_range(k)} columns",
    "expect_table_columns_to_match_ordered_list": lambda c, k: (
        f"The table's columns must be, in this order: {_values(k.get('column_list'))}"
    ),
    "expect_table_columns_to_match_set": lambda c, k: (
        f"The table's columns must {'be exactly' if k.get('exact_match', True) else 'include'}: {_values(k.get('column_set'))}"
    ),
}


def _generic(expectation_type: str, column: str, kwargs: dict[str, Any]) -> str:
    text = "Expect " + expectation_type.removeprefix("expect_").replace("_", " ")
    if column:
        text += f" on column {column}"
    skipped = _NOT_MEANING | {"column", "mostly", "row_condition"}
    settings = "; ".join(f"{k}: {show(v)}" for k, v in kwargs.items() if k not in skipped)
    return text + (f" ({settings})" if settings else "")


def wording(expectation_type: str, kwargs: dict[str, Any]) -> str:
    """One expectation in words, with `mostly` and `row_condition` when given."""
    column = kwargs.get("column")
    column = show(column) if column is not None else ""
    render = WORDINGS.get(expectation_type)
    text = render(column, kwargs) if render else _generic(expectation_type, column, kwargs)
    mostly = kwargs.get("mostly")
    if isinstance(mostly, (int, float)) and not isinstance(mostly, bool) and mostly < 1:
        text += f", for at least {mostly * 100:g}% of the rows"
    if kwargs.get("row_condition"):
        text += f", in rows where {show(kwargs['row_condition'])}"
    return text


def _notes(value: Any) -> list[str]:
    """Notes as text: a string, a list of strings, or ``{"format": ..., "content": string or list}``."""
    if isinstance(value, dict):
        value = value.get("content")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [text for text in (collapse(v) if isinstance(v, str) else None for v in value) if text]


def _domain(kwargs: dict[str, Any]) -> str | None:
    if kwargs.get("column") is not None:
        return show(kwargs["column"])
    if kwargs.get("column_A") is not None and kwargs.get("column_B") is not None:
        return f"{show(kwargs['column_A'])},{show(kwargs['column_B'])}"
    return None


def parse(path: Path, display: str) -> list[Entry]:
    doc = load_document(path, display).value
    if not isinstance(doc, dict):
        raise CatalogError.single(
            display, "document", f"expected an expectation suite object, found {type_name(doc)}"
        )
    collector = EntryCollector(display)
    try:
        suite = scalar_text(doc.get("expectation_suite_name"), "expectation_suite_name", "a suite name") or scalar_text(
            doc.get("name"), "name", "a suite name"
        )
        if not suite:
            raise Bad("document", "a suite needs `expectation_suite_name` (or `name` in GE 1.x)")
        expectations = items(doc.get("expectations"), "expectations", "`expectations`", required=True)
        meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
        suite_fields = {
            "suite": suite,
            "data_asset_name": scalar_text(doc.get("data_asset_name"), "data_asset_name"),
            "data_asset_type": scalar_text(doc.get("data_asset_type"), "data_asset_type"),
            "ge_version": scalar_text(meta.get("great_expectations_version"), "meta.great_expectations_version"),
        }
    except Bad as exc:
        raise CatalogError.single(display, exc.location, exc.reason) from None
    seen: dict[str, str] = {}
    for i, expectation in enumerate(expectations):
        where = at("expectations", i)
        try:
            if not isinstance(expectation, dict):
                raise Bad(where, f"an expectation must be an object, found {type_name(expectation)}")
            type_key = "expectation_type" if "expectation_type" in expectation else "type"
            expectation_type = scalar_text(expectation.get(type_key), at(where, type_key), "an expectation type")
            if not expectation_type:
                raise Bad(where, "an expectation needs `expectation_type` (or `type` in GE 1.x)")
            kwargs = mapping(expectation.get("kwargs"), at(where, "kwargs"), "`kwargs`")
            column = _domain(kwargs)
            key = "/".join(p for p in (suite, expectation_type, column, short_hash(kwargs)) if p)
            if key in seen:
                raise Bad(where, f"the same expectation (type and kwargs) as {seen[key]}")
            seen[key] = where
            meta = mapping(expectation.get("meta"), at(where, "meta"), "`meta`")
            notes = _notes(meta.get("notes")) + _notes(expectation.get("notes"))
            description = scalar_text(expectation.get("description"), at(where, "description"))
            words = wording(expectation_type, kwargs)
            payload = {
                **suite_fields,
                "expectation_type": expectation_type,
                "column": column,
                "kwargs": jsonable(kwargs),
                "rule": words,
                "description": description,
                "notes": notes,
                "severity": scalar_text(expectation.get("severity"), at(where, "severity")),
                "id": scalar_text(expectation.get("id"), at(where, "id")),
            }
            title = f"{expectation_type} on column {column}" if column else expectation_type
            extras = [f"Suite: {suite}"]
            if notes:
                extras.append("Notes: " + " ".join(n.rstrip() for n in notes))
            text = compose_text(
                "rule",
                title,
                {
                    "description": description or words,
                    "rules": [words] if description else [],
                    "severity": payload["severity"],
                },
                extras,
            )
            collector.add(where, key, "rule", payload, text=text)
        except Bad as exc:
            collector.problem(exc.location, exc.reason)
    return collector.finish()


FORMAT = Format("great_expectations", (".json",), detect=detect, parse=parse)
