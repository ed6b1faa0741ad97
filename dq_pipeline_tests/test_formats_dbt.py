"""dbt formats: manifest.json, catalog.json and property files (schema.yml), through discovery.

Real files: a trimmed fivetran/dbt_hubspot manifest + catalog and two of its property files
(Apache-2.0, see fixtures/dbt/ATTRIBUTION.md). Malformed variants and the dbt features the real
files lack (doc blocks left in descriptions, disabled configs, singular tests...) are hand-written.
"""

from __future__ import annotations

import json
import re
import shutil
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dq_pipeline.catalog import (
    CatalogError,
    Entry,
    discover,
    parse_catalog,
    parse_with_warnings,
    read_catalog,
)
from dq_pipeline.catalog.formats import by_name, choose, dbt_schema

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dbt"
HUBSPOT = FIXTURES / "hubspot"


# --- helpers ----------------------------------------------------------------------------------


def write(root: Path, name: str, content: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def parse(root: Path, name: str) -> list[Entry]:
    return parse_catalog(discover(root)[name.rsplit(".", 1)[0]])


def format_of(root: Path, name: str) -> str:
    file = discover(root)[name.rsplit(".", 1)[0]]
    return choose(file.root, file.path, file.display).name


def refusal(root: Path, name: str) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        parse(root, name)
    return info.value


def kinds(entries: list[Entry]) -> dict[str, int]:
    return dict(Counter(e.kind for e in entries))


def by_key(entries: list[Entry]) -> dict[str, Entry]:
    return {e.key: e for e in entries}


def content(entries: list[Entry]) -> list[tuple[Any, ...]]:
    return [(e.key, e.kind, e.text, json.dumps(dict(e.payload), sort_keys=True)) for e in entries]


def assert_refused(err: CatalogError, display: str, location: str, reason: str) -> None:
    message = str(err)
    assert err.path == display
    assert message.startswith(f"catalog {display} refused")
    assert f"\n  {location}: " in message, message
    assert reason in message, message


@pytest.fixture
def hubspot(tmp_path: Path) -> Path:
    shutil.copytree(HUBSPOT, tmp_path / "hubspot")
    return tmp_path


# --- manifest.json: the real (trimmed) hubspot manifest ----------------------------------------


def test_hubspot_manifest_entries_by_kind(hubspot: Path) -> None:
    entries = parse(hubspot, "hubspot/manifest.json")
    # 117 documented columns + 25 that only catalog.json knows (the two seeds document none).
    assert kinds(entries) == {"model": 5, "seed": 2, "source": 2, "test": 6, "column": 142}
    assert format_of(hubspot, "hubspot/manifest.json") == "dbt_manifest"


def test_hubspot_manifest_without_catalog_has_only_documented_columns(tmp_path: Path) -> None:
    shutil.copy(HUBSPOT / "manifest.json", tmp_path / "manifest.json")
    entries = parse(tmp_path, "manifest.json")
    assert kinds(entries) == {"model": 5, "seed": 2, "source": 2, "test": 6, "column": 117}
    assert all("type" not in e.payload for e in entries if e.kind == "column")  # the manifest declares none


def test_hubspot_manifest_keys(hubspot: Path) -> None:
    keys = by_key(parse(hubspot, "hubspot/manifest.json"))
    for key in (
        "model.hubspot.hubspot__tickets",
        "model.hubspot.hubspot__tickets.ticket_id",
        "model.hubspot.int_hubspot__email_event_aggregates",
        "seed.hubspot_integration_tests.deal_data",
        "seed.hubspot_integration_tests.deal_data.deal_id",
        "source.hubspot.hubspot.ticket",
        "source.hubspot.hubspot.ticket.property_hs_pipeline",
        "test.hubspot.not_null_hubspot__tickets_ticket_id.259c6846d7",
        "test.hubspot.unique_hubspot__daily_ticket_history_ticket_day_id.294440dc9c",
    ):
        assert key in keys, key
    assert keys["source.hubspot.hubspot.ticket"].kind == "source"
    assert keys["seed.hubspot_integration_tests.deal_data"].kind == "seed"


def test_hubspot_disabled_nodes_are_absent(hubspot: Path) -> None:
    keys = by_key(parse(hubspot, "hubspot/manifest.json"))
    disabled = json.loads((HUBSPOT / "manifest.json").read_text(encoding="utf-8"))["disabled"]
    assert set(disabled) == {
        "seed.hubspot_integration_tests.company_data",
        "test.hubspot_integration_tests.integrity_tickets",
        "test.hubspot_integration_tests.consistency_tickets",
    }
    assert not any(k == d or k.startswith(d + ".") for k in keys for d in disabled)


def test_hubspot_tests_are_worded_and_become_column_rules(hubspot: Path) -> None:
    keys = by_key(parse(hubspot, "hubspot/manifest.json"))
    test = keys["test.hubspot.not_null_hubspot__tickets_ticket_id.259c6846d7"]
    assert test.kind == "test"
    assert test.text == (
        "test not_null on hubspot__tickets.ticket_id. Applies to: model.hubspot.hubspot__tickets. Severity: error."
    )
    assert test.payload["column"] == "ticket_id"
    assert test.payload["applies_to"] == "model.hubspot.hubspot__tickets"
    history = keys["model.hubspot.hubspot__daily_ticket_history.ticket_day_id"]
    assert "Rules: unique; not_null." in history.text
    assert history.payload["rules"] == ["unique", "not_null"]


def test_hubspot_node_text_has_materialization_and_relation(hubspot: Path) -> None:
    keys = by_key(parse(hubspot, "hubspot/manifest.json"))
    tickets = keys["model.hubspot.hubspot__tickets"]
    assert tickets.text.startswith("model hubspot__tickets: Each record represents a ticket in Hubspot.")
    assert "Materialized: table. Relation: postgres.public_hubspot.hubspot__tickets." in tickets.text
    ephemeral = keys["model.hubspot.int_hubspot__email_event_aggregates"]
    assert "Materialized: ephemeral" in ephemeral.text and "Relation" not in ephemeral.text
    source = keys["source.hubspot.hubspot.ticket"]
    assert source.text == (
        "source hubspot.ticket: Each record represents a ticket in Hubspot. "
        "Relation: postgres.public.ticket_data. Loader: Fivetran."
    )


def test_hubspot_doc_blocks_resolve_and_no_template_text(hubspot: Path) -> None:
    entries = parse(hubspot, "hubspot/manifest.json")
    assert not [e.key for e in entries if "{{" in e.text or "{%" in e.text or "}}" in e.text]
    docs = json.loads((HUBSPOT / "manifest.json").read_text(encoding="utf-8"))["docs"]
    bounces = by_key(entries)["model.hubspot.hubspot__email_sends.bounces"]
    assert bounces.payload["description"] == docs["doc.hubspot.bounces"]["block_contents"]


def test_hubspot_column_types_come_from_catalog_json(hubspot: Path) -> None:
    entries = parse(hubspot, "hubspot/manifest.json")
    keys = by_key(entries)
    assert keys["model.hubspot.hubspot__tickets.ticket_id"].payload["type"] == "integer"
    assert keys["model.hubspot.hubspot__tickets.ticket_id"].text.startswith(
        "column hubspot__tickets.ticket_id (integer): "
    )
    seed_column = keys["seed.hubspot_integration_tests.deal_data.deal_id"]
    assert seed_column.payload == {
        "name": "deal_id",
        "table": "seed.hubspot_integration_tests.deal_data",
        "type": "bigint",
        "documented": False,
    }
    untyped = sorted(e.key for e in entries if e.kind == "column" and "type" not in e.payload)
    assert untyped == [  # an ephemeral model and two source columns the warehouse does not have
        "model.hubspot.int_hubspot__email_event_aggregates.email_send_id",
        "source.hubspot.hubspot.ticket._fivetran_deleted",
        "source.hubspot.hubspot.ticket.portal_id",
    ]


def test_hubspot_non_ascii_round_trips(hubspot: Path) -> None:
    agent = by_key(parse(hubspot, "hubspot/manifest.json"))[
        "model.hubspot.stg_hubspot__email_event_open.user_agent"
    ]
    assert agent.payload["description"].startswith(
        "The user agent responsible for the event, e.g. \u201cMozilla/5.0 "
    )
    assert agent.payload["description"].endswith("Safari/537.36\u201d")
    assert "\u201cMozilla" in agent.text


def test_pretty_printed_crlf_manifest_parses_like_the_original(tmp_path: Path) -> None:
    document = json.loads((HUBSPOT / "manifest.json").read_text(encoding="utf-8"))
    pretty = json.dumps(document, indent=2, ensure_ascii=False)
    write(tmp_path, "lf/manifest.json", pretty)
    write(tmp_path, "crlf/manifest.json", pretty.replace("\n", "\r\n"))
    write(tmp_path, "bom/manifest.json", b"\xef\xbb\xbf" + pretty.encode("utf-8"))
    shutil.copy(HUBSPOT / "manifest.json", tmp_path / "original.json")
    original = content(parse_catalog(discover(tmp_path)["original"]))
    assert content(parse(tmp_path, "lf/manifest.json")) == original
    assert content(parse(tmp_path, "crlf/manifest.json")) == original
    assert content(parse(tmp_path, "bom/manifest.json")) == original


# --- catalog.json -----------------------------------------------------------------------------


def test_catalog_json_beside_a_manifest_yields_no_entries(hubspot: Path) -> None:
    assert format_of(hubspot, "hubspot/catalog.json") == "dbt_catalog"
    assert parse(hubspot, "hubspot/catalog.json") == []


def test_standalone_catalog_json_yields_tables_and_typed_columns(tmp_path: Path) -> None:
    shutil.copy(HUBSPOT / "catalog.json", tmp_path / "catalog.json")
    entries = parse(tmp_path, "catalog.json")
    assert kinds(entries) == {"table": 8, "column": 139}
    assert all(e.payload.get("type") for e in entries if e.kind == "column")
    keys = by_key(entries)
    ticket = keys["model.hubspot.hubspot__tickets.ticket_id"]
    assert (
        ticket.text == "column hubspot__tickets.ticket_id (integer): Unique id of a ticket in Hubspot."
    )  # persisted docs
    table = keys["source.hubspot.hubspot.ticket"]
    assert table.payload["resource_type"] == "source"
    assert (
        table.text == "table ticket_data. Relation: postgres.public.ticket_data. Relation type: BASE TABLE."
    )


def test_broken_catalog_json_refuses_itself_and_its_manifest(hubspot: Path) -> None:
    catalog = json.loads((HUBSPOT / "catalog.json").read_text(encoding="utf-8"))
    catalog["nodes"]["model.hubspot.hubspot__tickets"]["columns"] = ["ticket_id"]
    write(hubspot, "hubspot/catalog.json", json.dumps(catalog))
    where = 'nodes["model.hubspot.hubspot__tickets"].columns'
    assert_refused(
        refusal(hubspot, "hubspot/catalog.json"),
        "hubspot/catalog.json",
        where,
        "expected an object of columns",
    )
    assert_refused(
        refusal(hubspot, "hubspot/manifest.json"),
        "hubspot/manifest.json",
        f"hubspot/catalog.json (the catalog beside this manifest) {where}",
        "expected an object of columns by name, found a list",
    )


# --- manifest.json: what the real file does not exercise --------------------------------------


def shop_manifest() -> dict[str, Any]:
    def column(name: str, description: str = "", **extra: Any) -> dict[str, Any]:
        return {"name": name, "description": description, "meta": {}, "data_type": None, "tags": [], **extra}

    def node(kind: str, name: str, **extra: Any) -> dict[str, Any]:
        config = {
            "enabled": True,
            "materialized": "table" if kind == "model" else kind,
            "tags": [],
            "meta": {},
        }
        config.update(extra.pop("config", {}))
        return {
            "database": "warehouse",
            "schema": "analytics",
            "name": name,
            "resource_type": kind,
            "package_name": "shop",
            "unique_id": f"{kind}.shop.{name}",
            "alias": name,
            "original_file_path": f"models/{name}.sql",
            "config": config,
            "tags": [],
            "meta": {},
            "description": "",
            "columns": {},
            "relation_name": f'"warehouse"."analytics"."{name}"',
            "raw_code": "select 1",
            **extra,
        }

    def test(
        name: str, column_name: str | None, metadata: dict[str, Any] | None, **extra: Any
    ) -> dict[str, Any]:
        body = node("test", name, column_name=column_name, test_metadata=metadata, **extra)
        body["config"].setdefault("severity", "ERROR")
        body["unique_id"] = f"test.shop.{name}.0123456789"
        return body

    nodes = [
        node(
            "model",
            "customers",
            description="{{ doc('customers_table') }}",
            tags=["core"],
            meta={"owner": "crm-team"},
            columns={
                "customer_id": column(
                    "customer_id", '{{ doc("customer_id") }}', constraints=[{"type": "not_null"}]
                ),
                "name": column("name", "Kundenname \u2013 \u540d\u524d \u2713", data_type="text"),
                "email": column("email", "{{ doc('other', 'email') }}", meta={"pii": True}, tags=["pii"]),
            },
        ),
        node(
            "model",
            "orders",
            description="One row per order, {{ var('currency', 'EUR') }} amounts. {# internal #}",
            config={"materialized": "view"},
            columns={
                "order_id": column("order_id", "Primary key."),
                "customer_id": column("customer_id", "Who ordered."),
                "status": column("status", "{{ doc('status') }}"),
            },
        ),
        node("model", "legacy", config={"enabled": False}, columns={"id": column("id")}),
        node(
            "snapshot",
            "customers_snapshot",
            description="Customer history.",
            columns={"dbt_valid_from": column("dbt_valid_from")},
        ),
        node("analysis", "adhoc"),
        test(
            "not_null_customers_customer_id",
            "customer_id",
            {
                "name": "not_null",
                "kwargs": {
                    "column_name": "customer_id",
                    "model": "{{ get_where_subquery(ref('customers')) }}",
                },
                "namespace": None,
            },
            attached_node="model.shop.customers",
            depends_on={"nodes": ["model.shop.customers"]},
        ),
        test(  # no attached_node (older manifests): attaches to the model its `model` argument names
            "relationships_orders_customer_id",
            "customer_id",
            {
                "name": "relationships",
                "kwargs": {
                    "to": "ref('customers')",
                    "field": "customer_id",
                    "column_name": "customer_id",
                    "model": "{{ get_where_subquery(ref('orders')) }}",
                },
                "namespace": None,
            },
            depends_on={"nodes": ["model.shop.customers", "model.shop.orders"]},
            config={"severity": "warn"},
        ),
        test(
            "accepted_values_orders_status",
            "status",
            {
                "name": "accepted_values",
                "kwargs": {"values": ["placed", "shipped"], "column_name": "status"},
                "namespace": None,
            },
            attached_node="model.shop.orders",
            depends_on={"nodes": ["model.shop.orders"]},
            config={"where": "status is not null"},
        ),
        test(
            "assert_positive_totals",
            None,
            None,
            description="Order totals are never negative.",
            depends_on={"nodes": ["model.shop.orders"]},
        ),
        test(
            "not_null_legacy_id", "id", {"name": "not_null", "kwargs": {}}, attached_node="model.shop.legacy"
        ),
        test("unique_old_id", "id", {"name": "unique", "kwargs": {}}, attached_node="model.shop.old"),
    ]
    source = node(
        "source",
        "payments",
        source_name="raw",
        identifier="payments_v2",
        loader="stitch",
        source_meta={"team": "finance"},
    )
    source["unique_id"] = "source.shop.raw.payments"
    source["columns"] = {
        "amount": column("amount", "Paid amount.", data_type="numeric"),
        "paid_at": column("paid_at"),
    }
    return {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "project_name": "shop",
        },
        "nodes": {n["unique_id"]: n for n in nodes},
        "sources": {source["unique_id"]: source},
        "macros": {"macro.shop.m": {"name": "m", "macro_sql": "{% macro m() %}{% endmacro %}"}},
        "docs": {
            "doc.shop.customer_id": {
                "name": "customer_id",
                "package_name": "shop",
                "block_contents": "The customer, {{ doc('pii_note') }}",
            },
            "doc.shop.pii_note": {
                "name": "pii_note",
                "package_name": "shop",
                "block_contents": "personal data.",
            },
            "doc.other.email": {
                "name": "email",
                "package_name": "other",
                "block_contents": "Email address (other package).",
            },
            "doc.shop.email": {
                "name": "email",
                "package_name": "shop",
                "block_contents": "WRONG: the other package's doc is asked for.",
            },
        },
        "disabled": {
            "model.shop.old": [{"name": "old", "resource_type": "model", "unique_id": "model.shop.old"}]
        },
        "parent_map": {},
        "child_map": {},
    }


def test_handwritten_manifest_entries(tmp_path: Path) -> None:
    write(tmp_path, "manifest.json", json.dumps(shop_manifest()))
    entries = parse(tmp_path, "manifest.json")
    assert kinds(entries) == {"model": 2, "snapshot": 1, "source": 1, "column": 9, "test": 4}
    keys = by_key(entries)
    assert (
        "model.shop.legacy" not in keys and "test.shop.not_null_legacy_id.0123456789" not in keys
    )  # enabled: false
    assert "test.shop.unique_old_id.0123456789" not in keys  # attached to a node of the `disabled` section
    assert "analysis.shop.adhoc" not in keys
    assert keys["snapshot.shop.customers_snapshot.dbt_valid_from"].kind == "column"


def test_handwritten_manifest_descriptions_resolve_doc_blocks(tmp_path: Path) -> None:
    write(tmp_path, "manifest.json", json.dumps(shop_manifest()))
    entries = parse(tmp_path, "manifest.json")
    keys = by_key(entries)
    assert keys["model.shop.customers.customer_id"].payload["description"] == "The customer, personal data."
    assert keys["model.shop.customers.email"].payload["description"] == "Email address (other package)."
    assert (
        keys["model.shop.customers"].payload["description"] == "customers table"
    )  # no such doc block: its name in words
    assert keys["model.shop.orders.status"].payload["description"] == "status"
    assert keys["model.shop.orders"].payload["description"] == "One row per order, EUR amounts."
    assert not [e.key for e in entries if re.search(r"\{\{|\}\}|\{%|\{#", e.text)]


def test_handwritten_manifest_tests_in_words(tmp_path: Path) -> None:
    write(tmp_path, "manifest.json", json.dumps(shop_manifest()))
    keys = by_key(parse(tmp_path, "manifest.json"))
    relationships = keys["test.shop.relationships_orders_customer_id.0123456789"]
    assert relationships.text == (
        "test relationships on orders.customer_id (to: ref('customers'), field: customer_id). "
        "Applies to: model.shop.orders. Severity: warn."
    )
    accepted = keys["test.shop.accepted_values_orders_status.0123456789"]
    assert accepted.text.startswith(
        "test accepted_values on orders.status (values: [placed, shipped]) where status is not null."
    )
    singular = keys["test.shop.assert_positive_totals.0123456789"]
    assert singular.text == (
        "test assert_positive_totals (singular) on orders: Order totals are never negative. "
        "Applies to: model.shop.orders. Severity: error."
    )
    assert keys["model.shop.orders.status"].payload["rules"] == [
        "accepted_values (values: [placed, shipped], where: status is not null)"
    ]
    assert keys["model.shop.orders.customer_id"].payload["rules"] == [
        "relationships (to: ref('customers'), field: customer_id)"
    ]
    assert keys["model.shop.customers.customer_id"].payload["rules"] == ["constraint not_null", "not_null"]
    assert "assert_positive_totals (singular test)" in keys["model.shop.orders"].payload["rules"]


def test_handwritten_manifest_text_and_payload(tmp_path: Path) -> None:
    write(tmp_path, "manifest.json", json.dumps(shop_manifest()))
    keys = by_key(parse(tmp_path, "manifest.json"))
    customers = keys["model.shop.customers"]
    assert customers.text == (
        "model customers: customers table. Tags: core. Rules: not_null on customer_id. "
        "Materialized: table. Relation: warehouse.analytics.customers. Meta: owner: crm-team."
    ) or customers.text == (
        "model customers: customers table. Tags: core. Materialized: table. "
        "Relation: warehouse.analytics.customers. Meta: owner: crm-team."
    )
    assert customers.payload["meta"] == {"owner": "crm-team"}
    name = keys["model.shop.customers.name"]
    assert name.payload["description"] == "Kundenname \u2013 \u540d\u524d \u2713"
    assert name.text == "column customers.name (text): Kundenname \u2013 \u540d\u524d \u2713."
    email = keys["model.shop.customers.email"]
    assert email.payload["tags"] == ["pii"] and email.payload["meta"] == {"pii": True}
    assert "Meta: pii: true" in email.text
    source = keys["source.shop.raw.payments"]
    assert (
        source.text
        == "source raw.payments. Relation: warehouse.analytics.payments_v2. Loader: stitch. Meta: team: finance."
    )
    assert (
        keys["source.shop.raw.payments.amount"].text == "column raw.payments.amount (numeric): Paid amount."
    )


def test_manifest_and_override(tmp_path: Path) -> None:
    """A dbt manifest is found by content, whatever its name; the override forces the format."""
    write(tmp_path, "target/prod_manifest.json", json.dumps(shop_manifest()))
    assert format_of(tmp_path, "target/prod_manifest.json") == "dbt_manifest"
    write(tmp_path, "plain.json", json.dumps({"metadata": {"dbt_schema_version": "x"}, "nodes": {}}))
    write(tmp_path, ".dq-formats.yaml", "plain.json: dbt_manifest\n")
    assert_refused(
        refusal(tmp_path, "plain.json"),
        "plain.json",
        "metadata.dbt_schema_version",
        "not a dbt manifest (found 'x')",
    )


def _mutate(change: Any) -> str:
    manifest = shop_manifest()
    change(manifest)
    return json.dumps(manifest)


def _drop_name(manifest: dict[str, Any]) -> None:
    del manifest["nodes"]["model.shop.customers"]["name"]


def _drop_column_name(manifest: dict[str, Any]) -> None:
    del manifest["nodes"]["model.shop.customers"]["columns"]["email"]["name"]


def _duplicate_column_name(manifest: dict[str, Any]) -> None:
    manifest["nodes"]["model.shop.customers"]["columns"]["email"]["name"] = "name"


MANIFEST_MALFORMED = [
    pytest.param(
        lambda: _mutate(lambda m: m.update(nodes=[])),
        "nodes",
        "expected an object, found a list",
        id="nodes-a-list",
    ),
    pytest.param(
        lambda: _mutate(lambda m: m["nodes"]["model.shop.customers"].update(columns=["customer_id"])),
        'nodes["model.shop.customers"].columns',
        "expected an object of columns by name, found a list",
        id="columns-a-list",
    ),
    pytest.param(
        lambda: _mutate(lambda m: m["nodes"].update({"model.shop.customers": "customers"})),
        'nodes["model.shop.customers"]',
        "expected an object, found a string",
        id="node-a-string",
    ),
    pytest.param(
        lambda: _mutate(_drop_name), 'nodes["model.shop.customers"]', "no `name`", id="model-without-name"
    ),
    pytest.param(
        lambda: _mutate(_drop_column_name),
        'nodes["model.shop.customers"].columns["email"]',
        "column without `name`",
        id="column-without-name",
    ),
    pytest.param(
        lambda: _mutate(_duplicate_column_name),
        'nodes["model.shop.customers"].columns["email"]',
        "duplicate column name 'name'",
        id="duplicate-column-name",
    ),
    pytest.param(
        lambda: _mutate(lambda m: m["nodes"]["model.shop.orders"].update(config=["view"])),
        'nodes["model.shop.orders"].config',
        "expected an object, found a list",
        id="config-a-list",
    ),
    pytest.param(
        lambda: json.dumps(shop_manifest()).replace(
            '"nodes": {"model.shop.customers": {', '"nodes": {"model.shop.customers": {"name": "x", ', 1
        ),
        'nodes["model.shop.customers"]',
        "duplicate key 'name' in one object",
        id="duplicate-key",
    ),
    pytest.param(
        lambda: json.dumps(shop_manifest()).replace(
            '"docs": {', '"docs": {"doc.shop.x": {"name": "x", "name": "y"}, ', 1
        ),
        'docs["doc.shop.x"]',
        "duplicate key 'name' in one object",
        id="duplicate-key-in-docs",
    ),
    pytest.param(
        lambda: json.dumps(shop_manifest()).rsplit(",", 1)[0],
        "line 1",
        "truncated JSON: Expecting ',' delimiter",
        id="truncated",
    ),
]


@pytest.mark.parametrize(("make", "location", "reason"), MANIFEST_MALFORMED)
def test_malformed_manifest_is_refused_with_location_and_reason(
    tmp_path: Path, make: Any, location: str, reason: str
) -> None:
    write(tmp_path, "dbt/manifest.json", make())
    assert_refused(refusal(tmp_path, "dbt/manifest.json"), "dbt/manifest.json", location, reason)


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_invalid_json_names_its_line_and_column(tmp_path: Path) -> None:
    text = json.dumps(shop_manifest(), indent=1)
    line = _line_of(text, '"name": "orders"')
    assert line > 50
    write(tmp_path, "manifest.json", text.replace('"name": "orders"', '"name": orders', 1))
    err = refusal(tmp_path, "manifest.json")
    assert_refused(err, "manifest.json", f"line {line}", "invalid JSON: Expecting value (column")


def test_invalid_utf8_in_manifest_names_its_line(tmp_path: Path) -> None:
    text = json.dumps(shop_manifest(), indent=1)
    line = _line_of(text, "Primary key.")
    write(tmp_path, "manifest.json", text.encode("utf-8").replace(b"Primary key.", b"Primary \xff key.", 1))
    assert_refused(
        refusal(tmp_path, "manifest.json"), "manifest.json", f"line {line}", "invalid UTF-8 byte 0xff"
    )


def _peak_parse_memory(root: Path, code_size: int) -> tuple[int, int]:
    """Peak traced memory while parsing a one-line manifest of 1,500 models with `code_size` bytes of SQL each."""
    manifest = shop_manifest()
    template = manifest["nodes"]["model.shop.orders"]
    for i in range(1500):
        model = json.loads(json.dumps(template))
        code = "-- generated model\n" + "y" * code_size
        model.update(
            name=f"orders_{i}",
            unique_id=f"model.shop.orders_{i}",
            raw_code=code,
            compiled_code=code,
            columns={},
        )
        manifest["nodes"][model["unique_id"]] = model
    text = json.dumps(manifest)
    write(root, "manifest.json", text)
    del manifest
    tracemalloc.start()
    try:
        entries = parse(root, "manifest.json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kinds(entries)["model"] == 1502
    return peak, len(text)


@pytest.mark.slow
def test_large_single_line_manifest_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Memory follows the entries, not the file: 30x more SQL in the file costs (almost) nothing."""
    small_peak, small_size = _peak_parse_memory(tmp_path / "small", 200)
    big_peak, big_size = _peak_parse_memory(tmp_path / "big", 6000)
    assert big_size > 17_000_000 and big_size > 8 * small_size
    assert big_peak < small_peak * 1.3, (small_peak, big_peak)
    assert big_peak < big_size / 4, (big_peak, big_size)  # json.loads would hold the whole text and more


# --- property files (schema.yml) --------------------------------------------------------------


def test_src_hubspot_yml_sources_and_columns(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "src_hubspot.yml", tmp_path / "src_hubspot.yml")
    assert format_of(tmp_path, "src_hubspot.yml") == "dbt_schema"
    entries = parse(tmp_path, "src_hubspot.yml")
    assert kinds(entries) == {"source": 62, "column": 478}
    keys = by_key(entries)
    assert keys["source.hubspot"].text == "source hubspot. Loader: Fivetran."
    assert (
        keys["source.hubspot.calendar_event"].text
        == "source hubspot.calendar_event: Each record represents a calendar event."
    )
    synced = keys["source.hubspot.calendar_event._fivetran_synced"]
    assert synced.location == "line 16 (sources[0].tables[0].columns[0])"
    assert (
        synced.text == "column hubspot.calendar_event._fivetran_synced: fivetran synced."
    )  # doc block elsewhere: its name
    assert not [e.key for e in entries if re.search(r"\{\{|\}\}|\{%", e.text)]


def test_marketing_yml_models_columns_and_tests(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "marketing.yml", tmp_path / "marketing.yml")
    entries = parse(tmp_path, "marketing.yml")
    assert kinds(entries) == {"model": 4, "column": 148, "test": 4}
    keys = by_key(entries)
    test = keys["test.not_null.model.hubspot__email_sends.event_id"]
    assert (
        test.text == "test not_null on hubspot__email_sends.event_id. Applies to: model.hubspot__email_sends."
    )
    assert (
        test.location == "line 20 (models[0].columns[6].tests[0])"
    )  # a test given by name: its column's line
    assert keys["model.hubspot__email_sends.event_id"].payload["rules"] == ["not_null"]
    assert keys["model.hubspot__email_sends.bounces"].payload["description"] == "bounces"


def test_data_tests_are_read_like_tests(tmp_path: Path) -> None:
    text = (FIXTURES / "marketing.yml").read_text(encoding="utf-8")
    write(tmp_path, "old.yml", text)
    write(tmp_path, "new.yml", re.sub(r"^(\s*)tests:", r"\1data_tests:", text, flags=re.M))
    assert (tmp_path / "new.yml").read_text(encoding="utf-8").count("data_tests:") == 4
    assert content(parse(tmp_path, "new.yml")) == content(parse(tmp_path, "old.yml"))


def test_crlf_property_file_parses_like_lf(tmp_path: Path) -> None:
    data = (FIXTURES / "src_hubspot.yml").read_bytes()
    write(tmp_path, "lf.yml", data)
    write(tmp_path, "crlf.yml", data.replace(b"\n", b"\r\n"))
    assert format_of(tmp_path, "crlf.yml") == "dbt_schema"
    lf, crlf = parse(tmp_path, "lf.yml"), parse(tmp_path, "crlf.yml")
    assert content(crlf) == content(lf)
    assert [e.location for e in crlf] == [e.location for e in lf]


SHOP_SCHEMA = """\
version: 2

models:
  - name: customers
    description: "{{ doc('customers_table') }}"
    config:
      materialized: table
      tags: [core]
      meta:
        owner: crm-team
    columns:
      - name: customer_id
        description: Primary key.
        data_type: bigint
        data_tests:
          - unique
          - not_null:
              config:
                severity: warn
      - name: status
        description: "Gr\u00f6\u00dfe \u2013 \u65e5\u672c\u8a9e \u2713 status"
        data_tests:
          - accepted_values:
              values: ['active', 'churned']
          - accepted_values:
              arguments:
                values: ['active', 'churned', 'unknown']
              config:
                where: "created_at > '2020-01-01'"
      - name: region_id
        tests:
          - relationships:
              to: ref('regions')
              field: id
    data_tests:
      - dbt_utils.expression_is_true:
          expression: "lifetime_value >= 0"
      - name: customers_have_rows
        test_name: dbt_utils.at_least_one
        column_name: customer_id
  - name: legacy_customers
    config:
      enabled: false
    columns:
      - name: id

seeds:
  - name: country_codes
    config:
      column_types:
        code: varchar(2)
    columns:
      - name: code
      - name: label
        data_type: text

snapshots:
  - name: customers_snapshot
    description: Daily customer history.
    columns:
      - name: dbt_valid_from

sources:
  - name: raw
    database: analytics
    schema: raw_data
    description: Landing zone.
    tables:
      - name: payments
        description: One row per payment.
        identifier: payments_v2
        columns:
          - name: amount
            data_type: numeric
            tests:
              - not_null

semantic_models:
  - name: customers
    model: ref('customers')
metrics:
  - name: customer_count
    type: simple
saved_queries:
  - name: q
unit_tests:
  - name: t
    model: customers
exposures:
  - name: dashboard
    type: dashboard
    owner: {name: x}
macros:
  - name: m
"""


def test_handwritten_property_file(tmp_path: Path) -> None:
    write(tmp_path, "models/schema.yml", SHOP_SCHEMA)
    entries = parse(tmp_path, "models/schema.yml")
    assert kinds(entries) == {"model": 1, "seed": 1, "snapshot": 1, "source": 2, "column": 7, "test": 8}
    keys = by_key(entries)
    assert "model.legacy_customers" not in keys and "model.legacy_customers.id" not in keys
    assert sorted(k for k in keys if k.startswith("test.")) == sorted(
        [
            "test.unique.model.customers.customer_id",
            "test.not_null.model.customers.customer_id",
            *[k for k in keys if k.startswith("test.accepted_values.model.customers.status.")],
            *[k for k in keys if k.startswith("test.relationships.model.customers.region_id.")],
            *[k for k in keys if k.startswith("test.dbt_utils.expression_is_true.model.customers.")],
            "test.customers_have_rows.model.customers.customer_id",
            "test.not_null.source.raw.payments.amount",
        ]
    )
    assert len([k for k in keys if k.startswith("test.accepted_values.model.customers.status.")]) == 2
    assert keys["model.customers"].text == (
        "model customers: customers table. Tags: core. Rules: dbt_utils.expression_is_true (expression: lifetime_value >= 0); "
        "dbt_utils.at_least_one. Materialized: table. Meta: owner: crm-team."
    )
    assert (
        keys["model.customers.customer_id"].text
        == "column customers.customer_id (bigint): Primary key. Rules: unique; not_null."
    )
    warn = keys["test.not_null.model.customers.customer_id"]
    assert warn.text == "test not_null on customers.customer_id. Applies to: model.customers. Severity: warn."
    assert warn.payload["column"] == "customer_id"
    status = keys["model.customers.status"]
    assert status.payload["description"] == "Gr\u00f6\u00dfe \u2013 \u65e5\u672c\u8a9e \u2713 status"
    assert status.payload["rules"] == [
        "accepted_values (values: [active, churned])",
        "accepted_values (values: [active, churned, unknown]) where created_at > '2020-01-01'",
    ]
    assert keys["model.customers.region_id"].payload["rules"] == [
        "relationships (to: ref('regions'), field: id)"
    ]
    assert (
        keys["test.customers_have_rows.model.customers.customer_id"].payload["test"]
        == "dbt_utils.at_least_one"
    )
    assert keys["seed.country_codes.code"].payload["type"] == "varchar(2)"
    assert keys["snapshot.customers_snapshot.dbt_valid_from"].kind == "column"
    assert (
        keys["source.raw.payments"].text
        == "source raw.payments: One row per payment. Relation: analytics.raw_data.payments_v2."
    )
    assert keys["source.raw.payments.amount"].payload["rules"] == ["not_null"]


def test_property_file_test_keys_do_not_depend_on_order(tmp_path: Path) -> None:
    first = "          - accepted_values:\n              values: ['active', 'churned']\n"
    second = (
        "          - accepted_values:\n              arguments:\n                values: ['active', 'churned', 'unknown']\n"
        "              config:\n                where: \"created_at > '2020-01-01'\"\n"
    )
    swapped = SHOP_SCHEMA.replace(first + second, second + first)
    assert swapped != SHOP_SCHEMA
    write(tmp_path, "a.yml", SHOP_SCHEMA)
    write(tmp_path, "b.yml", swapped)
    tests_a = {e.key: e.text for e in parse(tmp_path, "a.yml") if e.kind == "test"}
    tests_b = {e.key: e.text for e in parse(tmp_path, "b.yml") if e.kind == "test"}
    assert tests_a == tests_b


def test_property_file_without_version_is_dbt(tmp_path: Path) -> None:
    """dbt 1.5+ no longer needs `version: 2`; a file of dbt keys only is still a property file."""
    body = SHOP_SCHEMA.replace("version: 2\n\n", "")
    write(tmp_path, "orders.yml", body)
    assert format_of(tmp_path, "orders.yml") == "dbt_schema"
    assert kinds(parse(tmp_path, "orders.yml"))["test"] == 8


def test_detection_picks_dbt_and_leaves_ordinary_catalogs_to_the_generic_formats(tmp_path: Path) -> None:
    write(tmp_path, "dbt/manifest.json", json.dumps(shop_manifest()))
    write(tmp_path, "dbt/catalog.json", (HUBSPOT / "catalog.json").read_text(encoding="utf-8"))
    write(tmp_path, "dbt/schema.yml", SHOP_SCHEMA)
    write(
        tmp_path,
        "plain/crm.yaml",
        "- table: customers\n  description: Customers.\n- table: customers\n  column: models\n",
    )
    write(tmp_path, "plain/versioned.yaml", "version: 2\nentries:\n  - table: sources\n")
    write(
        tmp_path, "plain/ledger.json", json.dumps([{"table": "ledger", "description": "dbt_schema_version"}])
    )
    expected = {
        "dbt/manifest.json": "dbt_manifest",
        "dbt/catalog.json": "dbt_catalog",
        "dbt/schema.yml": "dbt_schema",
        "plain/crm.yaml": "yaml",
        "plain/versioned.yaml": "yaml",
        "plain/ledger.json": "json",
    }
    assert {name: format_of(tmp_path, name) for name in expected} == expected
    assert kinds(parse(tmp_path, "plain/crm.yaml")) == {"table": 1, "column": 1}
    assert [e.key for e in parse(tmp_path, "plain/versioned.yaml")] == ["sources"]
    assert [e.key for e in parse(tmp_path, "plain/ledger.json")] == ["ledger"]
    assert parse(tmp_path, "dbt/catalog.json") == []  # beside a manifest


def test_yaml_of_another_standard_is_not_a_dbt_property_file() -> None:
    datapackage = "name: countries\nversion: 1.0.0\nsources:\n  - title: UN\nresources:\n  - path: data.csv\n"
    assert not dbt_schema.detect(datapackage)
    assert not dbt_schema.detect("version: 2\nentries: []\n")
    assert dbt_schema.detect("version: 2\r\n\r\nmodels:\r\n  - name: x\r\n")
    assert dbt_schema.detect("# dbt\nversion: 2\nmetrics:\n  - name: m\n")
    assert by_name("dbt_schema").detect is dbt_schema.detect


YAML_MALFORMED = [
    pytest.param(
        "version: 2\nmodels:\n  - name: a\n  - description: nameless\n",
        "line 4 (models[1])",
        "model without `name`",
        id="model-without-name",
    ),
    pytest.param(
        "version: 2\nmodels:\n  - name: a\n    columns:\n      - name: id\n      - description: nameless\n",
        "line 6 (models[0].columns[1])",
        "column without `name`",
        id="column-without-name",
    ),
    pytest.param(
        "version: 2\nmodels:\n  - name: a\n  - name: b\n  - name: a\n",
        "line 5 (models[2])",
        "duplicate model name 'a' (first at line 3 (models[0]))",
        id="duplicate-model",
    ),
    pytest.param(
        "version: 2\nmodels:\n  a:\n    description: x\n",
        "line 1 (models)",
        "`models` must be a list, found an object",
        id="models-a-mapping",
    ),
    pytest.param(
        "version: 2\nmodels:\n  - name: a\n  - b\n",
        "line 1 (models[1])",
        "a model must be a mapping, found a string",
        id="model-a-string",
    ),
    pytest.param(
        "version: 2\nmodels:\n  - name: a\n    columns:\n      id: {}\n",
        "line 3 (models[0].columns)",
        "`columns` must be a list, found an object",
        id="columns-a-mapping",
    ),
    pytest.param(
        "version: 2\nmodels:\n  - name: a\n    meta: [owner]\n",
        "line 3 (models[0].meta)",
        "`meta` must be a mapping",
        id="meta-a-list",
    ),
    pytest.param(
        "version: 2\nmodels:\n  - name: a\n    tests:\n      - unique:\n        not_null:\n",
        "line 5 (models[0].tests[0])",
        "a test must be a test name or a mapping of one test name to its arguments",
        id="test-two-names",
    ),
    pytest.param(
        "version: 2\nmodels:\n  - name: a\n    tests: [unique]\n    data_tests: [unique]\n",
        "line 3 (models[0])",
        "both `tests` and `data_tests` given",
        id="tests-and-data-tests",
    ),
    pytest.param(
        "version: 1\nmodels:\n  - name: a\n",
        "line 1 (version)",
        "unsupported dbt property file version 1",
        id="version-1",
    ),
    pytest.param("version: 2\nmodels:\n  - name: [a\n", "line 4", "invalid YAML", id="invalid-yaml"),
    pytest.param(
        "version: 2\nmodels:\n  - name: a\n    description: caf\xe9\n".encode("latin-1"),
        "line 4",
        "invalid UTF-8 byte 0xe9",
        id="latin-1",
    ),
]


@pytest.mark.parametrize(("text", "location", "reason"), YAML_MALFORMED)
def test_malformed_property_file_is_refused_with_line_and_reason(
    tmp_path: Path, text: str | bytes, location: str, reason: str
) -> None:
    write(tmp_path, "models/schema.yml", text)
    assert format_of(tmp_path, "models/schema.yml") == "dbt_schema"
    assert_refused(refusal(tmp_path, "models/schema.yml"), "models/schema.yml", location, reason)


def test_each_problem_is_reported_once(tmp_path: Path) -> None:
    write(tmp_path, "schema.yml", "version: 2\nmodels:\n  - name: a\n    config: [table]\n")
    err = refusal(tmp_path, "schema.yml")
    assert [str(p) for p in err.problems] == [
        "line 3 (models[0].config): `config` must be a mapping, found a list"
    ]


def test_empty_descriptions_are_fine(tmp_path: Path) -> None:
    write(
        tmp_path,
        "schema.yml",
        "version: 2\nmodels:\n  - name: a\n    description: ''\n    columns:\n      - name: id\n        description:\n",
    )
    entries = parse(tmp_path, "schema.yml")
    assert [(e.key, e.text) for e in entries] == [("model.a", "model a."), ("model.a.id", "column a.id.")]


# --- what dbt tolerates: merge keys, duplicate keys, duplicate columns (issue 12) --------------

MERGED = """version: 2

x-id-column: &id_column
  name: id
  description: The primary key.
  data_tests: [unique, not_null]

models:
  - name: orders
    columns:
      - <<: *id_column
      - <<: *id_column
        name: customer_id
        description: The customer who ordered.
      - name: status
        <<: {data_type: text, description: Order status.}
"""


def test_yaml_merge_keys_work_and_explicit_keys_override_them(tmp_path: Path) -> None:
    write(tmp_path, "models/schema.yml", MERGED)
    file = discover(tmp_path)["models/schema"]
    entries, warnings = parse_with_warnings(file)
    columns = {e.key: e.payload for e in entries if e.kind == "column"}
    assert columns["model.orders.id"]["description"] == "The primary key."
    assert columns["model.orders.customer_id"]["description"] == "The customer who ordered."
    assert columns["model.orders.status"] == {
        "name": "status", "table": "model.orders", "type": "text", "description": "Order status."
    }
    # The anchor's tests come with it, for each column that merges it.
    assert sorted(e.key for e in entries if e.kind == "test") == [
        "test.not_null.model.orders.customer_id",
        "test.not_null.model.orders.id",
        "test.unique.model.orders.customer_id",
        "test.unique.model.orders.id",
    ]
    assert warnings == []  # an explicit key beside a merge is not a duplicate


def test_duplicate_mapping_key_in_schema_yml_warns_and_the_last_value_wins(tmp_path: Path) -> None:
    write(tmp_path, "models/schema.yml", "version: 2\nmodels:\n  - name: a\n    description: x\n    description: y\n")
    entries, warnings = parse_with_warnings(discover(tmp_path)["models/schema"])
    assert [(e.key, e.payload["description"]) for e in entries] == [("model.a", "y")]
    assert [(w.location, w.reason) for w in warnings] == [
        ("models/schema.yml:5", "duplicate key 'description' in one mapping (first at line 4): the last value is used")
    ]


def test_duplicate_column_in_schema_yml_warns_naming_both_lines_and_the_last_definition_wins(tmp_path: Path) -> None:
    write(
        tmp_path,
        "models/schema.yml",
        "version: 2\nsources:\n  - name: s\n    tables:\n      - name: t\n        columns:\n"
        "          - name: c\n            description: first\n            data_tests: [unique]\n"
        "          - name: d\n          - name: c\n            description: last\n",
    )
    entries, warnings = parse_with_warnings(discover(tmp_path)["models/schema"])
    found = by_key(entries)
    assert found["source.s.t.c"].payload["description"] == "last"
    assert found["source.s.t.c"].location == "line 11 (sources[0].tables[0].columns[2])"
    assert not any(e.kind == "test" for e in entries)  # the first definition's test goes with it, as in dbt
    assert [e.key for e in entries if e.kind == "column"] == ["source.s.t.c", "source.s.t.d"]
    assert [(w.location, w.reason) for w in warnings] == [
        (
            "models/schema.yml:11",
            "duplicate column name 'c' in s.t (first at line 7 (sources[0].tables[0].columns[0])): "
            "only the last definition is used, as in dbt (sources[0].tables[0].columns[2])",
        )
    ]
    # read_catalog, what the sync uses, returns the same warnings.
    assert read_catalog(tmp_path, "models/schema").warnings == warnings


def test_duplicate_models_in_one_file_are_still_refused_as_dbt_does(tmp_path: Path) -> None:
    write(tmp_path, "schema.yml", "version: 2\nmodels:\n  - name: a\n  - name: a\n")
    assert "duplicate model name 'a'" in str(refusal(tmp_path, "schema.yml"))


def test_yaml_alias_bomb_in_schema_yml_is_refused_by_name(tmp_path: Path) -> None:
    levels = ["  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    write(tmp_path, "schema.yml", "version: 2\nmodels:\n  - name: a\n    meta:\n" + "\n".join("  " * 2 + line for line in levels) + "\n")
    assert len((tmp_path / "schema.yml").read_bytes()) < 600
    err = refusal(tmp_path, "schema.yml")
    assert err.problems[0].location.startswith("line ")
    assert "aliases expand this node to" in err.problems[0].reason and "alias bomb" in err.problems[0].reason
