"""The open-standard catalog formats: Frictionless, DCAT, OpenMetadata, DataHub, Great Expectations.

Real files (fixtures/open, see ATTRIBUTION.md there) are parsed through discovery and format
detection as a sync would; malformed variants are written here. Every file is accepted whole or
refused whole naming the file, the record path (or line) and the reason (I6).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from dq_pipeline.catalog import CatalogError, Entry, discover, parse_catalog, parse_with_warnings
from dq_pipeline.catalog.formats import choose
from dq_pipeline.catalog.formats.great_expectations import wording
from dq_pipeline.catalog.formats.toolkit.html_text import html_to_text

OPEN = Path(__file__).resolve().parent / "fixtures" / "open"


def fixture(relative: str) -> bytes:
    return (OPEN / relative).read_bytes()


def write(root: Path, name: str, content: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def catalog_id(name: str) -> str:
    return name.rsplit(".", 1)[0]


def format_of(root: Path, name: str) -> str:
    file = discover(root)[catalog_id(name)]
    return choose(file.root, file.path, file.display).name


def parse(root: Path, name: str, content: str | bytes) -> list[Entry]:
    """Write one catalog file under `root` and parse it through discovery, as a sync would."""
    write(root, name, content)
    return parse_catalog(discover(root)[catalog_id(name)])


def refusal(root: Path, name: str, content: str | bytes) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        parse(root, name, content)
    return info.value


def kinds(entries: list[Entry]) -> dict[str, int]:
    return dict(Counter(e.kind for e in entries))


def by_key(entries: list[Entry]) -> dict[str, Entry]:
    return {e.key: e for e in entries}


def load(tmp_path: Path, relative: str) -> dict[str, Entry]:
    return by_key(parse(tmp_path, Path(relative).name, fixture(relative)))


# --- every real fixture: detected as its format, exact counts by kind -------------------------

REAL = [
    ("frictionless/country-codes.datapackage.json", "frictionless", {"dataset": 1, "table": 1, "column": 55}),
    (
        "frictionless/country-codes.datapackage-yaml.yml",
        "frictionless",
        {"dataset": 1, "table": 1, "column": 56},
    ),
    ("frictionless/covid-19.datapackage.json", "frictionless", {"dataset": 1, "table": 8, "column": 53}),
    ("frictionless/camtrap-dp.example-datapackage.json", "frictionless", {"dataset": 1, "table": 4}),
    ("frictionless/camtrap-dp.observations-table-schema.json", "frictionless", {"table": 1, "column": 28}),
    ("dcat/dcatus_with_none.trimmed.json", "dcat", {"dataset": 5, "distribution": 14}),
    ("dcat/catalogo-justicia.trimmed.json", "dcat", {"dataset": 3, "distribution": 5, "field": 53}),
    ("openmetadata/tables.trimmed.json", "openmetadata", {"table": 4, "column": 40}),
    ("openmetadata/tableTests.json", "openmetadata", {"test": 10}),
    ("datahub/bootstrap_mce.trimmed.json", "datahub", {"dataset": 3, "field": 12, "glossary_term": 1}),
    ("great_expectations/BasicDatasetProfiler_expectations.json", "great_expectations", {"rule": 43}),
]
REAL_IDS = [Path(r).name for r, _, _ in REAL]


@pytest.mark.parametrize(("relative", "fmt", "counts"), REAL, ids=REAL_IDS)
def test_real_file_is_detected_and_parsed_with_exact_counts(
    tmp_path: Path, relative: str, fmt: str, counts: dict[str, int]
) -> None:
    name = Path(relative).name
    entries = parse(tmp_path, name, fixture(relative))
    assert format_of(tmp_path, name) == fmt
    assert kinds(entries) == counts


@pytest.mark.parametrize(("relative", "fmt", "counts"), REAL, ids=REAL_IDS)
def test_entries_are_plain_json_with_sentence_texts(
    tmp_path: Path, relative: str, fmt: str, counts: dict[str, int]
) -> None:
    for entry in parse(tmp_path, Path(relative).name, fixture(relative)):
        json.dumps(dict(entry.payload), allow_nan=False)  # no dates, decimals or other non-JSON values
        assert entry.text.endswith(".") and entry.text.startswith(f"{entry.kind} ")
        assert entry.location


@pytest.mark.parametrize(("relative", "fmt", "counts"), REAL, ids=REAL_IDS)
def test_crlf_and_lf_give_identical_entries(
    tmp_path: Path, relative: str, fmt: str, counts: dict[str, int]
) -> None:
    lf = fixture(relative).replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    name = Path(relative).name
    a = parse(tmp_path / "lf", name, lf)
    b = parse(tmp_path / "crlf", name, crlf)
    assert [(e.key, e.kind, e.text, dict(e.payload), e.location) for e in a] == [
        (e.key, e.kind, e.text, dict(e.payload), e.location) for e in b
    ]
    assert len(a) == sum(counts.values())


def test_openmetadata_fixture_really_is_crlf() -> None:
    # The CRLF comparison above only means something if some real fixture has CRLF line ends.
    data = fixture("openmetadata/tables.trimmed.json")
    assert data.count(b"\r\n") == data.count(b"\n") > 1000


@pytest.mark.parametrize(
    "relative",
    [r for r, _, _ in REAL if not r.endswith(".yml")],
    ids=[i for i in REAL_IDS if not i.endswith(".yml")],
)
def test_truncated_json_is_refused_naming_the_line(tmp_path: Path, relative: str) -> None:
    data = fixture(relative)
    cut = data.rfind(b"\n", 0, len(data) // 2) + 1  # end on a complete line, as an interrupted copy would
    err = refusal(tmp_path, Path(relative).name, data[:cut])
    (problem,) = err.problems
    lines = data[:cut].count(b"\n")
    assert problem.location == f"line {lines + 1}"
    assert problem.reason.startswith("truncated JSON")


def test_bom_is_accepted(tmp_path: Path) -> None:
    plain = parse(tmp_path / "a", "p.json", fixture("frictionless/covid-19.datapackage.json"))
    bom = parse(tmp_path / "b", "p.json", b"\xef\xbb\xbf" + fixture("frictionless/covid-19.datapackage.json"))
    assert [(e.key, e.text) for e in plain] == [(e.key, e.text) for e in bom]


# --- detection: each format claims its files, generic catalogs stay generic ------------------

GENERIC = {
    "generic/list.json": json.dumps(
        [
            {"table": "orders", "column": "id", "description": "The order id"},
            {"table": "orders", "column": "resources", "description": "dataset fields expectations"},
        ]
    ),
    "generic/entries.json": json.dumps(
        {"entries": [{"table": "dataset", "column": "fields", "name": "fields", "type": "string"}]}
    ),
    "generic/nested.json": json.dumps(
        {
            "entries": [
                {"key": "x", "description": "y", "resources": [{"name": "a"}], "dataset": [{"title": "t"}]}
            ]
        }
    ),
    "generic/entries-yaml.yaml": "entries:\n  - table: resources\n    column: fields\n    description: a name\n",
    "generic/list-yaml.yaml": "- table: dataset\n  column: expectations\n",
}


def test_detection_picks_each_format_and_leaves_generic_catalogs_generic(tmp_path: Path) -> None:
    expected = {}
    for relative, fmt, _ in REAL:
        write(tmp_path, f"{fmt}/{Path(relative).name}", fixture(relative))
        expected[catalog_id(f"{fmt}/{Path(relative).name}")] = fmt
    for name, content in GENERIC.items():
        write(tmp_path, name, content)
        expected[catalog_id(name)] = name.rsplit(".", 1)[1]
    files = discover(tmp_path)
    chosen = {cid: choose(f.root, f.path, f.display).name for cid, f in files.items()}
    assert chosen == expected
    # and the generic ones still parse as generic entries
    assert [e.key for e in parse_catalog(files["generic/list"])] == ["orders.id", "orders.resources"]
    assert [e.key for e in parse_catalog(files["generic/entries"])] == ["dataset.fields"]


# --- Frictionless -----------------------------------------------------------------------------


def test_frictionless_constraints_keys_and_texts(tmp_path: Path) -> None:
    entries = load(tmp_path, "frictionless/country-codes.datapackage.json")
    alpha3 = entries["country-codes/country-codes.ISO3166-1-Alpha-3"]
    assert alpha3.kind == "column"
    assert alpha3.text == (
        "column country-codes.ISO3166-1-Alpha-3 (string): ISO3166-1-Alpha-3. Alpha-3 codes from ISO 3166-1 "
        "(synonymous with World Bank Codes). Rules: unique; minLength: 3; maxLength: 3."
    )
    assert alpha3.payload["constraints"] == {"unique": True, "minLength": 3, "maxLength": 3}
    assert alpha3.location == "resources[0].schema.fields[2]"
    package = entries["country-codes"]
    assert package.kind == "dataset"
    assert package.payload["licenses"] == ["ODC-PDDL-1.0"]
    assert entries["country-codes/country-codes"].kind == "table"


def test_frictionless_table_schema_keys_enum_and_foreign_keys(tmp_path: Path) -> None:
    entries = load(tmp_path, "frictionless/camtrap-dp.observations-table-schema.json")
    table = entries["observations"]
    assert table.kind == "table"
    assert table.payload["primary_key"] == ["observationID"]
    assert table.payload["foreign_keys"] == [
        {"fields": ["deploymentID"], "reference": {"resource": "deployments", "fields": ["deploymentID"]}},
        {"fields": ["mediaID"], "reference": {"resource": "media", "fields": ["mediaID"]}},
    ]
    assert entries["observations.observationID"].text == (
        "column observations.observationID (string): Unique identifier of the observation. "
        "Rules: primary key; required; unique. Examples: obs1."
    )
    assert entries["observations.observationType"].payload["rules"] == [
        "required",
        "enum: animal, human, vehicle, blank, unknown, unclassified",
    ]
    assert entries["observations.classificationProbability"].payload["rules"] == ["minimum: 0", "maximum: 1"]
    assert entries["observations.mediaID"].payload["rules"] == ["foreign key to media.mediaID"]
    # `required: false` is no rule
    assert "rules" not in entries["observations.eventID"].payload


def test_frictionless_schema_given_as_url_is_kept_and_not_fetched(tmp_path: Path) -> None:
    entries = load(tmp_path, "frictionless/camtrap-dp.example-datapackage.json")
    observations = entries["camtrap-dp-example-dataset/observations"]
    assert observations.payload["schema_reference"] == (
        "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/observations-table-schema.json"
    )
    assert observations.text.endswith("observations-table-schema.json (referenced, not read).")
    assert not [k for k in entries if k.startswith("camtrap-dp-example-dataset/observations.")]
    assert entries["camtrap-dp-example-dataset/individuals"].payload["inline_rows"] == 1
    assert entries["camtrap-dp-example-dataset"].payload["keywords"][:2] == [
        "camera traps",
        "public awareness campaign",
    ]


def test_frictionless_formats_and_missing_values(tmp_path: Path) -> None:
    entries = load(tmp_path, "frictionless/covid-19.datapackage.json")
    assert entries["covid-19/countries-aggregated"].payload["missing_values"] == [""]
    assert (
        entries["covid-19/countries-aggregated.Date"].text
        == "column countries-aggregated.Date (date). Format: %Y-%m-%d."
    )
    # "default" is no format worth naming
    assert "format" not in entries["covid-19/countries-aggregated.Country"].payload


def test_frictionless_yaml_and_json_agree_and_keep_non_ascii(tmp_path: Path) -> None:
    from_json = load(tmp_path / "j", "frictionless/country-codes.datapackage.json")
    from_yaml = load(tmp_path / "y", "frictionless/country-codes.datapackage-yaml.yml")
    fifa = "country-codes/country-codes.FIFA"
    expected = "Codes assigned by the Fédération Internationale de Football Association"
    assert from_json[fifa].payload["description"] == from_yaml[fifa].payload["description"] == expected
    assert from_json[fifa].text == from_yaml[fifa].text
    assert (
        from_yaml[fifa].location == "line 57 (resources[0].schema.fields[0])"
    )  # YAML locations carry the line


def test_frictionless_table_schema_without_name_is_keyed_by_catalog_path(tmp_path: Path) -> None:
    schema = {
        "fields": [{"name": "id", "type": "integer", "constraints": {"required": True, "pattern": "[0-9]+"}}]
    }
    entries = by_key(parse(tmp_path, "schemas/people.json", json.dumps(schema)))
    assert list(entries) == ["schemas/people", "schemas/people.id"]
    assert entries["schemas/people.id"].payload["rules"] == ["required", "pattern: [0-9]+"]


# --- DCAT -------------------------------------------------------------------------------------


def test_dcat_us_keys_html_and_nulls(tmp_path: Path) -> None:
    entries = load(tmp_path, "dcat/dcatus_with_none.trimmed.json")
    septa = entries["septa-regional-rail-trainview"]
    assert septa.payload["description"].startswith(
        "The TrainView API returns information on all current regional rail trains. The NextToArrive API"
    )
    assert "req1 is the starting Regional Rail station req2 is the ending" in septa.text
    bike = entries["bike-network-supporting-datasets"]
    assert bike.payload["description"].endswith(
        "This dataset is experimental and remains a work in progress. Please use with caution."
    )
    for entry in entries.values():
        assert "<i>" not in entry.text and "<br>" not in entry.text and "<li>" not in entry.text
    police = entries["2009-2012-police-advisory-commission-complaints"]
    assert "modified" not in police.payload  # "modified": null
    assert police.payload["publisher"] == "City of Philadelphia"
    api = entries["2009-2012-police-advisory-commission-complaints#distribution[3]"]
    assert api.kind == "distribution"
    assert api.text == (
        "distribution 2009-2012 PAC Complaints (API). Dataset: 2009-2012 Police Advisory Commission Complaints. "
        "Format: API (application/http)."
    )
    assert api.payload["access_url"].startswith("https://services.arcgis.com/")


def test_dcat_ar_fields_themes_and_spanish_text(tmp_path: Path) -> None:
    entries = load(tmp_path, "dcat/catalogo-justicia.trimmed.json")
    dataset = entries["d9a963ea-8b1d-4ca3-9dd9-07a4773e8c23"]
    assert dataset.payload["themes"] == ["Información Jurídica"]
    assert dataset.payload["theme_ids"] == ["informacion-juridica"]
    assert dataset.text.endswith("Themes: Información Jurídica.")
    field = entries["d9a963ea-8b1d-4ca3-9dd9-07a4773e8c23#distribution[0].fecha_boletin"]
    assert field.kind == "field"
    assert field.text == (
        "field fecha_boletin (date): Fecha en la que la norma se publicó en el boletín oficial "
        "(formato: DD/MM/AAAA). Distribution: Base Infoleg de Normativa Nacional. "
        "Dataset: Base de datos legislativos Infoleg."
    )
    assert field.location == "dataset[0].distribution[0].field[6]"


def test_dcat_keys_are_stable_across_runs(tmp_path: Path) -> None:
    first = [e.key for e in parse(tmp_path / "a", "data.json", fixture("dcat/dcatus_with_none.trimmed.json"))]
    again = [e.key for e in parse(tmp_path / "b", "data.json", fixture("dcat/dcatus_with_none.trimmed.json"))]
    assert first == again
    assert len(set(first)) == len(first)


def _dcat(*datasets: object, **catalog: object) -> str:
    return json.dumps(
        {"conformsTo": "https://project-open-data.cio.gov/v1.1/schema", **catalog, "dataset": list(datasets)}
    )


def test_dcat_hand_written_html_nulls_and_derived_key(tmp_path: Path) -> None:
    doc = _dcat(
        {
            "title": "Trees &amp; parks",
            "description": "<p>Counts of <b>trees</b>&nbsp;per&#160;park &lt;2024&gt;.</p><script>x()</script>"
            " Use <park_id> to join.",
            "keyword": [None, "trees", "", "parks"],
            "theme": None,
            "distribution": [{"mediaType": "text/csv", "downloadURL": "https://x/t.csv", "title": None}],
            "modified": None,
        }
    )
    entries = by_key(parse(tmp_path, "data.json", doc))
    dataset = entries["title:Trees & parks"]
    assert dataset.payload["key_from"] == "title"
    assert dataset.payload["description"] == "Counts of trees per park <2024>. Use <park_id> to join."
    assert dataset.payload["keywords"] == ["trees", "parks"]
    assert (
        dataset.text
        == "dataset Trees & parks: Counts of trees per park <2024>. Use <park_id> to join. Tags: trees, parks."
    )
    assert entries["title:Trees & parks#distribution[0]"].text == (
        "distribution text/csv of Trees & parks. Dataset: Trees & parks. Format: text/csv."
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<b>Bold</b>\n\n  and\tspaced", "Bold and spaced"),
        ("a < b and c > d", "a < b and c > d"),
        ("AT&amp;T &eacute;t&eacute; &#x2019;", "AT&T été ’"),
        ("<ul><li>one</li><li>two</li></ul>", "one two"),
        ("<style>p {}</style>text", "text"),
        ("plain  text", "plain text"),
    ],
)
def test_html_to_text(text: str, expected: str) -> None:
    assert html_to_text(text) == expected


# --- OpenMetadata -----------------------------------------------------------------------------


def test_openmetadata_tables_columns_nested_children_and_constraints(tmp_path: Path) -> None:
    entries = load(tmp_path, "openmetadata/tables.trimmed.json")
    table = entries["sample_data.ecommerce_db.shopify.dim_address_clean"]
    assert table.text == (
        "table sample_data.ecommerce_db.shopify.dim_address_clean: Created from dim_address after a small cleanup. "
        "Rules: primary key (address_id, shop_id). Columns: address_id, shop_id, first_name, last_name, address, "
        "company, city, region, zip, country, phone."
    )
    assert entries["sample_data.ecommerce_db.shopify.dim_address_clean.shop_id"].payload["rules"] == [
        "primary key"
    ]
    nested = entries["sample_data.ecommerce_db.shopify.dim_location.address.country.country_code"]
    assert nested.location == "tables[2].columns[3].children[3].children[0]"
    assert nested.payload["table"] == "sample_data.ecommerce_db.shopify.dim_location"
    assert nested.payload["parent"] == "sample_data.ecommerce_db.shopify.dim_location.address.country"
    # a declared fullyQualifiedName is the key; otherwise <databaseSchema>.<name>
    line_item = entries["sample_data.shopify.fact_line_item.line_item_id"]
    assert line_item.text == (
        "column fact_line_item.line_item_id (numeric): ID of the line item. This column is the primary key "
        "for the this table. Rules: primary key."
    )
    assert "sample_data.ecommerce_db.shopify.dim.api/client" in entries


def test_openmetadata_tests_in_words_one_entry_per_test(tmp_path: Path) -> None:
    entries = load(tmp_path, "openmetadata/tableTests.json")
    positive = entries["sample_data.ecommerce_db.shopify.dim_staff.user_id/columnValuesToBeBetween/c6d64e0c"]
    assert positive.text == (
        "test columnValuesToBeBetween on user_id: user_id should be positive. Rules: Values in column user_id "
        "must be at least 0. Applies to: sample_data.ecommerce_db.shopify.dim_staff.user_id."
    )
    assert positive.payload["runs"] == 2
    rows = [e for k, e in entries.items() if "/tableRowCountToEqual/" in k]
    assert len(rows) == 1
    assert rows[0].payload["last_result"]["status"] == "Failed"  # the run at 1646221199 is the latest
    assert "The table must have exactly 120 rows" in rows[0].text
    forbidden = [e for k, e in entries.items() if "/columnValuesToBeNotInSet/" in k]
    assert "Values in column last_name must not be any of: forbidden, random" in forbidden[0].text


# --- DataHub ----------------------------------------------------------------------------------
# Duplicate JSON keys (DataHub and Frictionless accept them, last value wins): test_formats_duplicates.py

KAFKA = "urn:li:dataset:(urn:li:dataPlatform:kafka,SampleKafkaDataset,PROD)"


def test_datahub_datasets_fields_terms_and_ignored_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dq_pipeline.catalog.formats.datahub"):
        entries = load(tmp_path, "datahub/bootstrap_mce.trimmed.json")
    kafka = entries[KAFKA]
    assert kafka.text == "dataset SampleKafkaDataset (kafka). Fields: field_foo_2, field_bar, id."
    assert kafka.payload["custom_properties"] == {"prop1": "fakeprop", "prop2": "pikachu"}
    field = entries[f"urn:li:schemaField:({KAFKA},[version=2.0].[type=boolean].field_foo_2)"]
    assert (
        field.text
        == "field SampleKafkaDataset.field_foo_2 (varchar(100)): Foo field description. Tags: NeedsDocumentation."
    )
    # EditableSchemaMetadata's tag is applied to the field it names
    hdfs = entries[
        "urn:li:schemaField:(urn:li:dataset:(urn:li:dataPlatform:hdfs,SampleHdfsDataset,PROD),shipment_info)"
    ]
    assert hdfs.payload["tags"] == ["Legacy"]
    term = entries["urn:li:glossaryTerm:CustomerAccount"]
    assert term.kind == "glossary_term"
    assert term.text.endswith("Parent: ClientsAndAccounts. Source: FIBO.")
    (message,) = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert message == (
        "bootstrap_mce.trimmed.json: ignored 1 corpuser records, 1 dataPlatform records, 2 dataset browsePaths "
        "aspects, 1 dataset container aspects, 1 dataset datasetProfile aspects, 3 dataset institutionalMemory "
        "aspects, 1 dataset testResults aspects, 1 glossaryNode records, 1 glossaryTerm ownership aspects, "
        "1 mlFeature records, 1 tag records"
    )


def _mcp(urn: str, aspect: str, value: object, change: str = "UPSERT") -> dict[str, object]:
    return {
        "entityType": urn.split(":")[2],
        "entityUrn": urn,
        "changeType": change,
        "aspectName": aspect,
        "aspect": {
            "value": value if isinstance(value, str) else json.dumps(value),
            "contentType": "application/json",
        },
    }


ORDERS = "urn:li:dataset:(urn:li:dataPlatform:postgres,shop.public.orders,PROD)"


def test_datahub_mcps_last_write_wins_delete_and_removed(tmp_path: Path) -> None:
    gone = "urn:li:dataset:(urn:li:dataPlatform:postgres,shop.public.old,PROD)"
    records = [
        _mcp(ORDERS, "datasetProperties", {"description": "first", "name": "orders"}),
        _mcp(ORDERS, "datasetProperties", {"description": "Orders placed in the shop", "name": "orders"}),
        _mcp(ORDERS, "globalTags", {"tags": [{"tag": "urn:li:tag:PII"}]}),
        _mcp(ORDERS, "editableDatasetProperties", {"description": "edited"}),
        _mcp(ORDERS, "editableDatasetProperties", {}, change="DELETE"),
        {
            "entityType": "dataset",
            "entityUrn": ORDERS,
            "aspectName": "schemaMetadata",
            "aspect": {
                "json": {
                    "fields": [
                        {
                            "fieldPath": "id",
                            "nativeDataType": "bigint",
                            "description": "Order id",
                            "isPartOfKey": True,
                        }
                    ]
                }
            },
        },
        _mcp(gone, "status", {"removed": True}),
        _mcp("urn:li:corpuser:jdoe", "corpUserInfo", {"active": True}),
    ]
    entries = by_key(parse(tmp_path, "mcps.json", json.dumps(records)))
    assert list(entries) == [ORDERS, f"urn:li:schemaField:({ORDERS},id)"]
    assert (
        entries[ORDERS].text == "dataset orders (postgres): Orders placed in the shop. Tags: PII. Fields: id."
    )
    assert entries[f"urn:li:schemaField:({ORDERS},id)"].payload["is_part_of_key"] is True


# --- Great Expectations -----------------------------------------------------------------------


def test_great_expectations_words_keys_and_notes(tmp_path: Path) -> None:
    entries = load(tmp_path, "great_expectations/BasicDatasetProfiler_expectations.json")
    not_null = entries["default/expect_column_values_to_not_be_null/Unnamed: 0/86be60d1"]
    assert not_null.kind == "rule"
    assert not_null.text == (
        "rule expect_column_values_to_not_be_null on column Unnamed: 0: Values in column Unnamed: 0 must not be "
        "null, for at least 50% of the rows. Suite: default. Notes: This is a list of strings assigned to the notes key."
    )
    assert not_null.location == "expectations[5]"
    assert entries["default/expect_table_row_count_to_be_between/8d105bb4"].payload["rule"] == (
        "The table must have at least 0 rows"
    )
    in_type = entries["default/expect_column_values_to_be_in_type_list/Unnamed: 0/ae04eb10"]
    assert in_type.payload["notes"] == [
        "#### These are expectation notes - you can use markdown - or just strings"
    ]
    assert entries["default/expect_column_unique_value_count_to_be_between/Unnamed: 0/9f2b5d22"].payload[
        "notes"
    ] == [
        "This is a",
        "string list,",
        "assigned to the 'content' key of a notes dict.",
        "Cool",
        "huh?",
    ]


def test_great_expectations_keys_follow_content_not_position(tmp_path: Path) -> None:
    suite = json.loads(fixture("great_expectations/BasicDatasetProfiler_expectations.json"))
    keys = {e.key for e in parse(tmp_path / "a", "suite.json", json.dumps(suite))}
    suite["expectations"].reverse()
    assert {e.key for e in parse(tmp_path / "b", "suite.json", json.dumps(suite))} == keys
    suite["expectations"][-1]["kwargs"]["min_value"] = 5  # the table row count expectation, now last
    changed = {e.key for e in parse(tmp_path / "c", "suite.json", json.dumps(suite))}
    assert len(changed - keys) == 1 and len(keys - changed) == 1


@pytest.mark.parametrize(
    ("expectation_type", "kwargs", "expected"),
    [
        (
            "expect_column_values_to_not_be_null",
            {"column": "passenger_count"},
            "Values in column passenger_count must not be null",
        ),
        (
            "expect_column_values_to_be_unique",
            {"column": "id", "mostly": 0.95},
            "Values in column id must be unique, for at least 95% of the rows",
        ),
        (
            "expect_column_values_to_be_between",
            {"column": "fare", "min_value": 0, "max_value": 500},
            "Values in column fare must be between 0 and 500",
        ),
        (
            "expect_column_values_to_be_between",
            {"column": "fare", "max_value": 500, "strict_max": True},
            "Values in column fare must be less than 500",
        ),
        (
            "expect_column_values_to_be_in_set",
            {"column": "n", "value_set": [1, 2, 3]},
            "Values in column n must be one of: 1, 2, 3",
        ),
        (
            "expect_column_values_to_match_regex",
            {"column": "zip", "regex": "^[0-9]{5}$"},
            "Values in column zip must match the regular expression ^[0-9]{5}$",
        ),
        ("expect_table_row_count_to_equal", {"value": 10}, "The table must have exactly 10 rows"),
        (
            "expect_column_mean_to_be_between",
            {"column": "x", "min_value": 1, "max_value": 1},
            "The mean of column x must be exactly 1",
        ),
        (
            "expect_column_pair_values_to_be_equal",
            {"column_A": "a", "column_B": "b"},
            "Values in columns a and b must be equal",
        ),
        (
            "expect_column_values_to_not_be_null",
            {"column": "x", "row_condition": 'status=="paid"'},
            'Values in column x must not be null, in rows where status=="paid"',
        ),
        (
            "expect_column_values_to_be_fancy",
            {"column": "x", "level": 3, "result_format": "BASIC"},
            "Expect column values to be fancy on column x (level: 3)",
        ),
    ],
)
def test_expectation_wording(expectation_type: str, kwargs: dict[str, object], expected: str) -> None:
    assert wording(expectation_type, kwargs) == expected


# --- malformed files: refused whole, naming file, record path and reason -----------------------

_PKG = '{"name": "p", "resources": [%s]}'
_SNAP = "com.linkedin.pegasus2avro.metadata.snapshot.DatasetSnapshot"

MALFORMED = [
    # Frictionless
    pytest.param(
        "datapackage.json",
        _PKG % '{"name": "r", "schema": {"fields": {"name": "a"}}}',
        "frictionless",
        "resources[0].schema.fields",
        "`fields` must be a list, found an object",
        id="fl-fields-not-list",
    ),
    pytest.param(
        "datapackage.json",
        _PKG % '{"name": "r", "schema": {"fields": [{"name": "a"}, {"type": "string"}]}}',
        "frictionless",
        "resources[0].schema.fields[1]",
        "a field needs a non-empty `name`",
        id="fl-field-no-name",
    ),
    pytest.param(
        "datapackage.json",
        _PKG % '{"name": "r"}, {"path": "b.csv"}',
        "frictionless",
        "resources[1]",
        "a resource needs a non-empty `name`",
        id="fl-resource-no-name",
    ),
    pytest.param(
        "datapackage.json",
        _PKG % '{"name": "r", "schema": {"fields": [{"name": "a", "constraints": [1]}]}}',
        "frictionless",
        "resources[0].schema.fields[0].constraints",
        "`constraints` must be an object, found a list",
        id="fl-constraints-not-object",
    ),
    pytest.param(
        "datapackage.json",
        _PKG % '{"name": "r", "schema": {"fields": [{"name": "a"}], "primaryKey": ["nope"]}}',
        "frictionless",
        "resources[0].schema.primaryKey",
        "names field(s) the schema does not have: nope",
        id="fl-primary-key-unknown",
    ),
    pytest.param(
        "datapackage.json",
        _PKG % '{"name": "r", "schema": {"fields": [{"name": "a"}, {"name": "a"}]}}',
        "frictionless",
        "resources[0].schema.fields[1]",
        "duplicate entry key 'p/r.a' (first at resources[0].schema.fields[0])",
        id="fl-duplicate-field",
    ),
    pytest.param(
        "datapackage.json",
        '{"name": "p", "resources": {"r": 1}}',
        "frictionless",
        "resources",
        "`resources` must be a list, found an object",
        id="fl-resources-not-list",
    ),
    pytest.param(
        "schema.json",
        '{"fields": [{"name": "a"}], "foreignKeys": [{"fields": ["a"], "reference": {"resource": "", "fields": ["a", "b"]}}]}',
        "frictionless",
        "foreignKeys[0]",
        "1 local field(s) but 2 referenced field(s)",
        id="fl-foreign-key-arity",
    ),
    pytest.param(
        "datapackage.yaml",
        "name: p\nresources:\n  - name: r\n    schema:\n      fields:\n        - name: a\n        - type: string\n",
        "frictionless",
        "line 7 (resources[0].schema.fields[1])",
        "a field needs a non-empty `name`",
        id="fl-yaml-field-no-name",
    ),
    # DCAT
    pytest.param(
        "data.json",
        '{"conformsTo": "x", "dataset": {"title": "t"}}',
        "dcat",
        "dataset",
        "`dataset` must be a list, found an object",
        id="dcat-dataset-not-list",
    ),
    pytest.param(
        "data.json",
        _dcat({"identifier": "a", "title": "A"}, {"description": "no id, no title"}),
        "dcat",
        "dataset[1]",
        "a dataset needs an `identifier` or a `title`",
        id="dcat-no-identifier-no-title",
    ),
    pytest.param(
        "data.json",
        _dcat({"identifier": "a", "title": "A"}, {"identifier": "a", "title": "B"}),
        "dcat",
        "dataset[1]",
        "duplicate entry key 'a' (first at dataset[0])",
        id="dcat-duplicate-identifier",
    ),
    pytest.param(
        "data.json",
        _dcat({"identifier": "a", "title": "A", "distribution": {"title": "d"}}),
        "dcat",
        "dataset[0].distribution",
        "`distribution` must be a list, found an object",
        id="dcat-distribution-not-list",
    ),
    pytest.param(
        "data.json",
        _dcat(
            {
                "identifier": "a",
                "title": "A",
                "distribution": [{"field": [{"title": "x"}, {"type": "string"}]}],
            }
        ),
        "dcat",
        "dataset[0].distribution[0].field[1]",
        "a field needs a `title` (its column name)",
        id="dcat-field-no-title",
    ),
    pytest.param(
        "data.json",
        _dcat({"identifier": "a", "title": {"en": "A"}}),
        "dcat",
        "dataset[0].title",
        "expected a string, found an object",
        id="dcat-title-object",
    ),
    pytest.param(
        "data.json",
        _dcat({"identifier": "a", "title": 2019}),
        "dcat",
        "dataset[0].title",
        "expected a string, found a number",
        id="dcat-title-number",
    ),
    pytest.param(
        "data.json",
        _dcat({"identifier": "a", "title": "A", "distribution": [{"title": "d", "description": 7}]}),
        "dcat",
        "dataset[0].distribution[0].description",
        "expected a string, found a number",
        id="dcat-distribution-description-number",
    ),
    pytest.param(
        "data.json",
        '{"conformsTo": "x", "dataset": [{"identifier": "a", "title": "A", "title": "B"}]}',
        "dcat",
        "dataset[0]",
        "duplicate key 'title' in one object",
        id="dcat-duplicate-json-key",
    ),
    # OpenMetadata
    pytest.param(
        "tables.json",
        '{"tables": [{"name": "t", "columns": [{"name": "a", "dataType": "INT"}, {"dataType": "INT"}]}]}',
        "openmetadata",
        "tables[0].columns[1]",
        "a column needs a non-empty `name`",
        id="om-column-no-name",
    ),
    pytest.param(
        "tables.json",
        '{"tables": [{"name": "t", "columns": [{"name": "a", "dataType": "STRUCT", "children": {"b": 1}}]}]}',
        "openmetadata",
        "tables[0].columns[0].children",
        "`children` must be a list, found an object",
        id="om-children-not-list",
    ),
    pytest.param(
        "tables.json",
        '{"tables": [{"name": "t", "columns": [{"name": "a", "dataType": "INT"}], '
        '"tableConstraints": [{"constraintType": "PRIMARY_KEY", "columns": ["nope"]}]}]}',
        "openmetadata",
        "tables[0].tableConstraints[0].columns",
        "names column(s) the table does not have: nope",
        id="om-constraint-unknown-column",
    ),
    pytest.param(
        "tables.json",
        '{"tables": [{"columns": [{"name": "a", "dataType": "INT"}]}]}',
        "openmetadata",
        "tables[0]",
        "a table needs a non-empty `name`",
        id="om-table-no-name",
    ),
    pytest.param(
        "tests.json",
        '[{"table": "t", "columnTests": [{"testCase": {"config": {}}, "columnName": "a"}]}]',
        "openmetadata",
        "[0].columnTests[0]",
        "a test needs `testCase.columnTestType`",
        id="om-test-no-type",
    ),
    pytest.param(
        "tests.json",
        '[{"table": "t", "columnTests": [{"testCase": {"columnTestType": "columnValuesToBeUnique"}}]}]',
        "openmetadata",
        "[0].columnTests[0]",
        "a column test needs a `columnName`",
        id="om-column-test-no-column",
    ),
    # DataHub
    pytest.param(
        "mce.json",
        json.dumps([{"proposedSnapshot": {_SNAP: {"urn": ORDERS, "aspects": []}}}, {"foo": 1}]),
        "datahub",
        "[1]",
        "neither an MCE (`proposedSnapshot`) nor an MCP",
        id="dh-neither-mce-nor-mcp",
    ),
    pytest.param(
        "mce.json",
        json.dumps([{"proposedSnapshot": {_SNAP: {"urn": ORDERS, "aspects": [{"a": {}, "b": {}}]}}}]),
        "datahub",
        f'[0].proposedSnapshot["{_SNAP}"].aspects[0]',
        "an aspect must be one object keyed by its class name",
        id="dh-aspect-not-single-key",
    ),
    pytest.param(
        "mce.json",
        json.dumps(
            [_mcp(ORDERS, "schemaMetadata", {"fields": [{"fieldPath": "a"}, {"nativeDataType": "int"}]})]
        ),
        "datahub",
        "[0].aspect.value.fields[1]",
        "a schema field needs a `fieldPath`",
        id="dh-field-no-path",
    ),
    pytest.param(
        "mce.json",
        json.dumps([_mcp(ORDERS, "status", {}), {"entityUrn": None, "aspectName": "status", "aspect": {}}]),
        "datahub",
        "[1]",
        "an MCP needs an `entityUrn`",
        id="dh-mcp-no-urn",
    ),
    pytest.param(
        "mce.json",
        json.dumps([_mcp(ORDERS, "datasetProperties", '{"description": ')]),
        "datahub",
        "[0].aspect.value",
        "serialized aspect: line 1: truncated JSON",
        id="dh-serialized-truncated",
    ),
    # Great Expectations
    pytest.param(
        "suite.json",
        json.dumps(
            {
                "expectation_suite_name": "s",
                "expectations": [
                    {"expectation_type": "expect_column_to_exist", "kwargs": {"column": "a"}},
                    {"expectation_type": "expect_column_to_exist", "kwargs": {"column": "a"}},
                ],
            }
        ),
        "great_expectations",
        "expectations[1]",
        "the same expectation (type and kwargs) as expectations[0]",
        id="ge-duplicate-expectation",
    ),
    pytest.param(
        "suite.json",
        json.dumps(
            {"expectations": [{"expectation_type": "expect_column_to_exist", "kwargs": {"column": "a"}}]}
        ),
        "great_expectations",
        "document",
        "a suite needs `expectation_suite_name` (or `name` in GE 1.x)",
        id="ge-no-suite-name",
    ),
    pytest.param(
        "suite.json",
        json.dumps(
            {"expectation_suite_name": "s", "expectations": [{"expectation_type": "expect_x", "kwargs": [1]}]}
        ),
        "great_expectations",
        "expectations[0].kwargs",
        "`kwargs` must be an object, found a list",
        id="ge-kwargs-not-object",
    ),
    pytest.param(
        "suite.json",
        json.dumps({"expectation_suite_name": "s", "expectations": {"a": 1}}),
        "great_expectations",
        "expectations",
        "`expectations` must be a list, found an object",
        id="ge-expectations-not-list",
    ),
    pytest.param(
        "suite.json",
        json.dumps({"expectation_suite_name": "s", "expectations": [{"kwargs": {"column": "a"}}]}),
        "great_expectations",
        "expectations[0]",
        "an expectation needs `expectation_type` (or `type` in GE 1.x)",
        id="ge-no-type",
    ),
]


@pytest.mark.parametrize(("name", "content", "fmt", "location", "reason"), MALFORMED)
def test_malformed_file_is_refused_naming_file_location_and_reason(
    tmp_path: Path, name: str, content: str, fmt: str, location: str, reason: str
) -> None:
    display = f"domain/{name}"
    err = refusal(tmp_path, display, content)
    assert format_of(tmp_path, display) == fmt  # refused by its own format, not by the generic reader
    assert err.path == display
    assert str(err).startswith(f"catalog {display} refused")
    assert any(p.location == location and p.reason.startswith(reason) for p in err.problems), err.problems


def test_all_problems_of_an_open_format_file_are_reported_together(tmp_path: Path) -> None:
    doc = _dcat(
        {"identifier": "a", "title": "A"}, {"description": "x"}, {"identifier": "a", "title": "B"}, "oops"
    )
    err = refusal(tmp_path, "data.json", doc)
    assert [(p.location, p.reason) for p in err.problems] == [
        ("dataset[1]", "a dataset needs an `identifier` or a `title`"),
        ("dataset[2]", "duplicate entry key 'a' (first at dataset[0])"),
        ("dataset[3]", "a dataset must be an object, found a string"),
    ]


def test_dcat_null_list_items_are_skipped_with_a_warning_as_the_header_says(tmp_path: Path) -> None:
    """Issue 12 item 11: the header says null items are skipped; they are, and each is a warning."""
    write(
        tmp_path,
        "data.json",
        _dcat(
            {
                "identifier": "a",
                "title": "A",
                "keyword": ["x", None],
                "modified": None,
                "distribution": [None, {"title": "CSV", "downloadURL": "https://x/a.csv"}],
            }
        ),
    )
    entries, warnings = parse_with_warnings(discover(tmp_path)["data"])
    assert [e.key for e in entries] == ["a", "a#distribution[1]"]  # keys keep the position in the file
    assert entries[0].payload["keywords"] == ["x"] and entries[0].payload["distributions"] == 1
    assert [(w.location, w.reason) for w in warnings] == [
        ("data.json (dataset[0].modified)", "`modified` is null (DCAT-US requires it): skipped"),
        ("data.json (dataset[0].keyword[1])", "null list item skipped"),
        ("data.json (dataset[0].distribution[0])", "null list item skipped"),
    ]
