"""DataHub metadata files: a JSON list of MCEs (``{"proposedSnapshot": {"...DatasetSnapshot": {urn,
aspects}}}``) and/or MCPs (``{"entityType", "entityUrn", "aspectName", "aspect"}``), or one of them alone.

Reads datasets (entry kind `dataset`, key: the dataset urn; platform, name and environment from the urn,
description from EditableDatasetProperties over DatasetProperties, tags, glossary terms, sub-types,
owners, upstream datasets, custom properties), their schema fields from SchemaMetadata (kind `field`,
key: DataHub's own ``urn:li:schemaField:(<dataset urn>,<fieldPath>)``; `nativeDataType`, description,
tags and terms, with EditableSchemaMetadata's edits applied), and glossary terms (kind
`glossary_term`, key: the term urn; definition, source, parent node). An aspect written twice keeps
the last write (as DataHub does); an MCP with changeType DELETE removes it; a dataset whose Status says
`removed` is left out. MCP aspects serialized as a JSON string (`aspect.value`) are parsed too.

Ignores, and counts in an INFO log line per file: every other entity type (data platforms, ML
features/models, charts, dashboards, jobs, flows, users, groups, tags, containers, tests ...), the
other aspects of datasets and terms (browse paths, institutional memory, profiles, usage statistics,
test results, containers ...) and PATCH proposals.
Refuses, naming the record path (``[4].proposedSnapshot[...].aspects[4][...].fields[2]``): truncated
JSON, a record that is neither an MCE nor an MCP,
a snapshot or MCP without a urn, aspects that are not single-key objects, a schema field without
`fieldPath`, two fields with one path in one schema, nesting deeper than 100 levels.
Warns: a key repeated in one JSON object (the last value is used; line and key named); a null item
in `tags`/`typeNames` lists (skipped); an embedded text cut to its first 8,192 characters or a
payload over 1 MiB (see builder: the payload is kept whole).
Duplicate keys: accepted with a warning, the last value winning, in the file and in serialized
aspects alike, because that is what DataHub's own reader does: its file source loads the file with
Python's `json` (last value wins, no error) and parses a serialized aspect's `value` with
`json.loads` too. DataHub's own `bootstrap_mce.json` repeats `upstreams` in a fine-grained lineage
and is ingested by DataHub (see the tests). Only this rule differs from `records.load_json`'s default.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..builder import EntryCollector
from ..entry import CatalogError, Entry
from . import Format
from .records import load_json
from .toolkit.documents import load_document
from .toolkit.paths import at
from .toolkit.sniffing import outline
from .toolkit.values import Bad, items, jsonable, mapping, scalar_text, text_list, type_name
from .toolkit.wording import compose_text, listing

log = logging.getLogger(__name__)

_DATASET_URN = re.compile(r"^urn:li:dataset:\(urn:li:dataPlatform:([^,]+),(.+),([^,()]+)\)$")
_PATH_TOKEN = re.compile(r"\[[^\]]*\]|[^.]+")
DATASET_ASPECTS = frozenset(
    {
        "datasetProperties",
        "editableDatasetProperties",
        "schemaMetadata",
        "editableSchemaMetadata",
        "globalTags",
        "glossaryTerms",
        "ownership",
        "upstreamLineage",
        "status",
        "subTypes",
    }
)
TERM_ASPECTS = frozenset({"glossaryTermInfo"})
READ = {"dataset": DATASET_ASPECTS, "glossaryTerm": TERM_ASPECTS}
_WRITES = {None, "UPSERT", "CREATE", "UPDATE", "RESTATE", "CREATE_ENTITY"}
TOOL = "DataHub's file source"  # whose duplicate-key rule this reader follows (module header)


def detect(head: str) -> bool:
    shape = outline(head)
    prefix = {"array": "item", "object": ""}.get(shape.root or "")
    if prefix is None:
        return False
    return shape.has(prefix, "proposedSnapshot") or (
        shape.has(prefix, "entityUrn") and shape.has(prefix, "aspectName", "aspect")
    )


def _entity_type(urn: str) -> str:
    parts = urn.split(":", 3)
    return parts[2] if len(parts) > 2 and parts[0] == "urn" else "unknown"


def _aspect_name(class_name: str) -> str:
    short = class_name.rsplit(".", 1)[-1]
    return short[:1].lower() + short[1:]


def _tail(urn: str) -> str:
    """The readable end of a tag / term / user urn: `urn:li:tag:Legacy` -> `Legacy`."""
    return urn.split(":", 3)[-1] if urn.startswith("urn:li:") else urn


def _union(value: Any) -> Any:
    """Avro JSON unions wrap a value in its type name: `{"string": "text"}` -> `"text"`."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, inner),) = value.items()
        if name in ("string", "boolean", "int", "long", "float", "double"):
            return inner
    return value


def _urns(value: Any, where: str, list_key: str, urn_key: str) -> list[str]:
    found = []
    holder = mapping(value, where, "the aspect")
    for i, item in enumerate(items(holder.get(list_key), at(where, list_key), f"`{list_key}`")):
        if isinstance(item, dict):
            urn = scalar_text(item.get(urn_key), at(at(at(where, list_key), i), urn_key))
        else:
            urn = scalar_text(item, at(at(where, list_key), i))
        if urn:
            found.append(urn)
    return found


@dataclass
class _Entity:
    urn: str
    kind: str
    where: str
    aspects: dict[str, tuple[Any, str]] = field(default_factory=dict)


class _Reader:
    def __init__(self, display: str):
        self.display = display
        self.collector = EntryCollector(display)
        self.entities: dict[str, _Entity] = {}
        self.ignored: Counter[str] = Counter()

    def record(self, where: str, record: Any) -> None:
        if not isinstance(record, dict):
            raise Bad(where, f"expected an MCE or MCP object, found {type_name(record)}")
        if "proposedSnapshot" in record:
            self.snapshot(at(where, "proposedSnapshot"), record["proposedSnapshot"])
        elif "entityUrn" in record or "aspectName" in record:
            self.proposal(where, record)
        elif "proposedDelta" in record:
            self.ignored["proposedDelta records"] += 1
        else:
            raise Bad(
                where, "neither an MCE (`proposedSnapshot`) nor an MCP (`entityUrn`, `aspectName`, `aspect`)"
            )

    def entity(self, urn: str, where: str) -> _Entity | None:
        kind = _entity_type(urn)
        if kind not in READ:
            self.ignored[f"{kind} records"] += 1
            return None
        if urn not in self.entities:
            self.entities[urn] = _Entity(urn, kind, where)
        return self.entities[urn]

    def snapshot(self, where: str, value: Any) -> None:
        if not isinstance(value, dict) or len(value) != 1:
            raise Bad(where, "expected one snapshot object keyed by its class name")
        ((class_name, snapshot),) = value.items()
        swhere = at(where, class_name)
        snapshot = mapping(snapshot, swhere, "a snapshot")
        urn = scalar_text(snapshot.get("urn"), at(swhere, "urn"), "a urn")
        if not urn:
            raise Bad(swhere, "a snapshot needs a `urn`")
        aspects = items(snapshot.get("aspects"), at(swhere, "aspects"), "`aspects`")
        entity = self.entity(urn, swhere)
        if entity is None:
            return
        for j, aspect in enumerate(aspects):
            awhere = at(at(swhere, "aspects"), j)
            if not isinstance(aspect, dict) or len(aspect) != 1:
                raise Bad(awhere, "an aspect must be one object keyed by its class name")
            ((aspect_class, body),) = aspect.items()
            self.aspect(entity, _aspect_name(aspect_class), body, at(awhere, aspect_class))

    def proposal(self, where: str, record: dict[str, Any]) -> None:
        urn = scalar_text(record.get("entityUrn"), at(where, "entityUrn"), "a urn")
        if not urn:
            raise Bad(where, "an MCP needs an `entityUrn`")
        name = scalar_text(record.get("aspectName"), at(where, "aspectName"), "an aspect name")
        if not name:
            raise Bad(where, "an MCP needs an `aspectName`")
        change = scalar_text(record.get("changeType"), at(where, "changeType"))
        entity = self.entity(urn, where)
        if entity is None:
            return
        if change == "DELETE":
            entity.aspects.pop(name, None)
            return
        if change not in _WRITES:
            self.ignored[f"{change} proposals"] += 1
            return
        body, bwhere = self.aspect_body(record.get("aspect"), at(where, "aspect"))
        self.aspect(entity, name, body, bwhere)

    def aspect_body(self, value: Any, where: str) -> tuple[Any, str]:
        value = mapping(value, where, "`aspect`")
        if isinstance(value.get("value"), str):
            content = scalar_text(value.get("contentType"), at(where, "contentType"))
            if content not in (None, "application/json"):
                raise Bad(at(where, "contentType"), f"cannot read aspect content type {content!r}")
            try:
                return load_json(value["value"], self.display, duplicates="warn", tool=TOOL, within=at(where, "value")), at(where, "value")
            except CatalogError as exc:
                reasons = "; ".join(f"{p.location}: {p.reason}" for p in exc.problems)
                raise Bad(at(where, "value"), f"serialized aspect: {reasons}") from None
        if isinstance(value.get("json"), dict):
            return value["json"], at(where, "json")
        return value, where

    def aspect(self, entity: _Entity, name: str, body: Any, where: str) -> None:
        if name in READ[entity.kind]:
            entity.aspects[name] = (mapping(body, where, f"aspect {name}"), where)
        else:
            self.ignored[f"{entity.kind} {name} aspects"] += 1

    # --- entries --------------------------------------------------------------------------------

    def finish(self) -> list[Entry]:
        for entity in self.entities.values():
            try:
                if entity.kind == "dataset":
                    self.dataset(entity)
                else:
                    self.term(entity)
            except Bad as exc:
                self.collector.problem(exc.location, exc.reason)
        if self.ignored:
            log.info(
                "%s: ignored %s",
                self.display,
                ", ".join(f"{n} {what}" for what, n in sorted(self.ignored.items())),
            )
        return self.collector.finish()

    def get(self, entity: _Entity, name: str) -> tuple[dict[str, Any], str]:
        return entity.aspects.get(name, ({}, entity.where))

    def dataset(self, entity: _Entity) -> None:
        status, _ = self.get(entity, "status")
        if status.get("removed") is True:
            self.ignored["removed datasets"] += 1
            return
        match = _DATASET_URN.match(entity.urn)
        platform, urn_name, env = match.groups() if match else (None, None, None)
        props, pwhere = self.get(entity, "datasetProperties")
        edits, ewhere = self.get(entity, "editableDatasetProperties")
        name = scalar_text(props.get("name"), at(pwhere, "name")) or urn_name or entity.urn
        description = scalar_text(_union(edits.get("description")), at(ewhere, "description")) or scalar_text(
            _union(props.get("description")), at(pwhere, "description")
        )
        tags_aspect, twhere = self.get(entity, "globalTags")
        terms_aspect, gwhere = self.get(entity, "glossaryTerms")
        tags = [_tail(t) for t in _urns(tags_aspect, twhere, "tags", "tag")]
        tags += [t for t in text_list(props.get("tags"), at(pwhere, "tags")) if t not in tags]
        terms = [_tail(t) for t in _urns(terms_aspect, gwhere, "terms", "urn")]
        owners = [_tail(o) for o in _urns(*self.get(entity, "ownership"), "owners", "owner")]
        upstreams = _urns(*self.get(entity, "upstreamLineage"), "upstreams", "dataset")
        sub_types, swhere = self.get(entity, "subTypes")
        types = text_list(sub_types.get("typeNames"), at(swhere, "typeNames"))
        schema, swhere = self.get(entity, "schemaMetadata")
        fields = items(schema.get("fields"), at(swhere, "fields"), "`fields`")
        payload = {
            "urn": entity.urn,
            "platform": platform,
            "name": name,
            "env": env,
            "qualified_name": scalar_text(props.get("qualifiedName"), at(pwhere, "qualifiedName")),
            "description": description,
            "sub_types": types,
            "tags": tags,
            "glossary_terms": terms,
            "owners": owners,
            "upstreams": upstreams,
            "custom_properties": jsonable(props.get("customProperties")),
            "external_url": scalar_text(props.get("externalUrl"), at(pwhere, "externalUrl")),
            "schema_name": scalar_text(schema.get("schemaName"), at(swhere, "schemaName")),
        }
        field_names = [
            self.field_name(f.get("fieldPath"))
            for f in fields
            if isinstance(f, dict) and isinstance(f.get("fieldPath"), str)
        ]
        extras = []
        if types:
            extras.append(f"Type: {', '.join(types)}")
        if terms:
            extras.append(f"Glossary terms: {', '.join(terms)}")
        if field_names:
            extras.append(f"Fields: {listing(field_names, 40)}")
        text = compose_text("dataset", name, {"type": platform, "description": description, "tags": tags}, extras)
        self.collector.add(entity.where, entity.urn, "dataset", payload, text=text)
        edited = self.field_edits(entity)
        for k, item in enumerate(fields):
            try:
                self.field(entity.urn, name, at(at(swhere, "fields"), k), item, edited)
            except Bad as exc:
                self.collector.problem(exc.location, exc.reason)

    @staticmethod
    def field_name(path: str) -> str:
        """A v2 field path without its `[version=2.0]` / `[type=...]` annotations."""
        parts = [p for p in _PATH_TOKEN.findall(path) if not p.startswith("[")]
        return ".".join(parts) or path

    def field_edits(self, entity: _Entity) -> dict[str, tuple[dict[str, Any], str]]:
        aspect, where = self.get(entity, "editableSchemaMetadata")
        edits = {}
        for i, info in enumerate(
            items(
                aspect.get("editableSchemaFieldInfo"),
                at(where, "editableSchemaFieldInfo"),
                "`editableSchemaFieldInfo`",
            )
        ):
            iwhere = at(at(where, "editableSchemaFieldInfo"), i)
            info = mapping(info, iwhere, "an editable field info")
            path = scalar_text(info.get("fieldPath"), at(iwhere, "fieldPath"))
            if path:
                edits[path] = (info, iwhere)
        return edits

    def field(
        self,
        dataset_urn: str,
        dataset_name: str,
        where: str,
        item: Any,
        edits: dict[str, tuple[dict[str, Any], str]],
    ) -> None:
        if not isinstance(item, dict):
            raise Bad(where, f"a schema field must be an object, found {type_name(item)}")
        path = scalar_text(item.get("fieldPath"), at(where, "fieldPath"), "a field path")
        if not path:
            raise Bad(where, "a schema field needs a `fieldPath`")
        edit, ewhere = edits.get(path, ({}, where))
        description = scalar_text(_union(edit.get("description")), at(ewhere, "description")) or scalar_text(
            _union(item.get("description")), at(where, "description")
        )
        tags = [_tail(t) for t in _urns(item.get("globalTags"), at(where, "globalTags"), "tags", "tag")]
        tags += [
            t
            for t in (
                _tail(t) for t in _urns(edit.get("globalTags"), at(ewhere, "globalTags"), "tags", "tag")
            )
            if t not in tags
        ]
        terms = [
            _tail(t) for t in _urns(item.get("glossaryTerms"), at(where, "glossaryTerms"), "terms", "urn")
        ]
        terms += [
            t
            for t in (
                _tail(t)
                for t in _urns(edit.get("glossaryTerms"), at(ewhere, "glossaryTerms"), "terms", "urn")
            )
            if t not in terms
        ]
        native = scalar_text(_union(item.get("nativeDataType")), at(where, "nativeDataType"))
        type_class = mapping(item.get("type"), at(where, "type"), "`type`").get("type")
        datahub_type = None
        if isinstance(type_class, dict) and len(type_class) == 1:
            datahub_type = next(iter(type_class)).rsplit(".", 1)[-1].removesuffix("Type").lower() or None
        name = self.field_name(path)
        payload = {
            "dataset": dataset_urn,
            "field_path": path,
            "name": name,
            "description": description,
            "native_data_type": native,
            "type": datahub_type,
            "nullable": item.get("nullable") if isinstance(item.get("nullable"), bool) else None,
            "is_part_of_key": True if item.get("isPartOfKey") is True or "[key=True]" in path else None,
            "tags": tags,
            "glossary_terms": terms,
        }
        extras = [f"Glossary terms: {', '.join(terms)}"] if terms else []
        text = compose_text(
            "field",
            f"{dataset_name}.{name}",
            {"type": native or datahub_type, "description": description, "tags": tags},
            extras,
        )
        self.collector.add(where, f"urn:li:schemaField:({dataset_urn},{path})", "field", payload, text=text)

    def term(self, entity: _Entity) -> None:
        info, where = self.get(entity, "glossaryTermInfo")
        name = scalar_text(info.get("name"), at(where, "name")) or _tail(entity.urn)
        definition = scalar_text(_union(info.get("definition")), at(where, "definition"))
        parent = scalar_text(info.get("parentNode"), at(where, "parentNode"))
        payload = {
            "urn": entity.urn,
            "name": name,
            "definition": definition,
            "parent_node": parent,
            "term_source": scalar_text(info.get("termSource"), at(where, "termSource")),
            "source_ref": scalar_text(info.get("sourceRef"), at(where, "sourceRef")),
            "source_url": scalar_text(info.get("sourceUrl"), at(where, "sourceUrl")),
            "custom_properties": jsonable(info.get("customProperties")),
        }
        extras = [f"Parent: {_tail(parent)}"] if parent else []
        if payload["source_ref"]:
            extras.append(f"Source: {payload['source_ref']}")
        text = compose_text("glossary_term", name, {"description": definition}, extras)
        self.collector.add(entity.where, entity.urn, "glossary_term", payload, text=text)


def parse(path: Path, display: str) -> list[Entry]:
    doc = load_document(path, display, duplicates="warn", tool=TOOL).value
    reader = _Reader(display)
    records = doc if isinstance(doc, list) else [doc]
    if not isinstance(doc, (list, dict)):
        raise CatalogError.single(
            display, "document", f"expected a list of MCEs/MCPs, found {type_name(doc)}"
        )
    for i, record in enumerate(records):
        try:
            reader.record(f"[{i}]" if isinstance(doc, list) else "", record)
        except Bad as exc:
            reader.collector.problem(exc.location or "document", exc.reason)
    return reader.finish()


FORMAT = Format("datahub", (".json",), detect=detect, parse=parse)
