"""DCAT JSON catalogs: DCAT-US / Project Open Data ``data.json`` and other DCAT JSON with a `dataset` list.

Reads each dataset (entry kind `dataset`: title, description, keywords, publisher name, themes,
identifier, modified/issued, access level, license, landing page), each of its distributions (kind
`distribution`: title, format, media type, download/access URL, description) and, where a distribution
lists them (DCAT-AR), its fields (kind `field`: title, type, description, unit). Theme ids are named
through the catalog's `themeTaxonomy` when it has one. HTML in descriptions is reduced to text (tags
stripped, entities unescaped, whitespace collapsed). A field set to null is absent (DCAT-US allows
null for optional fields).

Warns (accepted, recorded with the record path): a null item in a list (`keyword`, `theme`,
`language`, `distribution`, `field`), which is skipped (the DCAT-US schema allows none; data.gov's
harvester reports it per record and goes on); a null `title`, `description`, `modified`,
`identifier` or `accessLevel` of a dataset, fields DCAT-US requires; an embedded text cut to
`builder.TEXT_MAX_CHARS` or a payload over 1 MiB (a 38 MB `spatial` GeoJSON is kept whole in the
record and not embedded: only the text is, and a Qdrant point carries ids and hashes only).

Keys: a dataset is keyed by its `identifier`; one without an identifier by ``title:<title>`` (stable
while the title is); one with neither is refused, and so are two datasets sharing an identifier (DCAT-US
requires it unique; silently renaming one would hide a broken catalog). A distribution is keyed
``<dataset key>#distribution[<i>]`` by its position, because DCAT-US distributions have no identifier
and titles and URLs repeat within a dataset in real catalogs; a field ``<distribution key>.<title>``.

Ignores: catalog-level metadata except `themeTaxonomy`, `@context`/`@type`/`@id`, contact emails,
bureau and program codes, `describedBy` schemas (noted, not fetched), `references`.
Refuses, naming the record path (``dataset[12].distribution[3]``): truncated or invalid JSON, nesting
deeper than 100 levels, `dataset`/`distribution`/`field` that are not lists, a list item that is neither
an object nor null, a `title` or `description` that is not a string (a number is refused: the DCAT-US
schema types them as strings), a dataset with neither identifier nor title, two datasets sharing one,
a `themeTaxonomy` id or label that is an object or a list.
Duplicate keys: a JSON object naming one key twice is refused (RFC 8259 leaves the meaning undefined
and parsers disagree on which value wins), naming the object's record path.
The whole file is parsed with `records.load_json` (no streaming): a 1.4 MB data.json (1,093 datasets)
parses in 0.04 s with a 4.5 MiB peak of Python heap; memory grows about 3x the file size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..builder import EntryCollector
from ..entry import CatalogError, Entry
from ..notices import tolerated
from . import Format
from .toolkit.documents import YAML_SUFFIXES, load_document
from .toolkit.html_text import html_to_text
from .toolkit.paths import at
from .toolkit.sniffing import outline
from .toolkit.values import Bad, items, jsonable, scalar_text, text_list, text_only, type_name
from .toolkit.wording import compose_text, join_text

_DATASET_HINTS = (
    "distribution",
    "identifier",
    "accessLevel",
    "landingPage",
    "keyword",
    "publisher",
    "issued",
    "modified",
)


def detect(head: str) -> bool:
    shape = outline(head)
    if shape.root != "object" or not shape.has("", "dataset"):
        return False
    if shape.has("", "conformsTo", "@context", "themeTaxonomy", "dataset_count") or "dcat:Catalog" in head:
        return True
    return shape.has("dataset.item", *_DATASET_HINTS) and shape.has("dataset.item", "title", "identifier")


_REQUIRED = ("title", "description", "modified", "identifier", "accessLevel")


def _text(record: dict[str, Any], key: str, where: str) -> str | None:
    return scalar_text(record.get(key), at(where, key))


def _string(record: dict[str, Any], key: str, where: str) -> str | None:
    return text_only(record.get(key), at(where, key), "a string")


def _objects(value: Any, where: str, what: str) -> list[tuple[int, Any]]:
    """The items of a list of objects with their positions; null items are skipped with a warning."""
    found = []
    for i, item in enumerate(items(value, where, what)):
        if item is None:
            tolerated(at(where, i), "null list item skipped")
            continue
        found.append((i, item))
    return found


def _publisher(value: Any, where: str) -> str | None:
    if isinstance(value, dict):
        return scalar_text(value.get("name"), at(where, "name")) or scalar_text(value.get("fn"), at(where, "fn"))
    return scalar_text(value, where, "a publisher name or object")


def _contact(value: Any, where: str) -> str | None:
    if isinstance(value, dict):
        return scalar_text(value.get("fn"), at(where, "fn"))
    return None


def _themes(doc: dict[str, Any], collector: EntryCollector) -> dict[str, str]:
    """Theme id -> label from a DCAT-AR style `themeTaxonomy` list; anything else gives no names.

    An id or label that is an object or a list is refused with the file's other problems: DCAT-AR
    types both as text, and a theme named by the repr of an object would be embedded as noise."""
    names: dict[str, str] = {}
    taxonomy = doc.get("themeTaxonomy")
    if isinstance(taxonomy, list):
        for i, theme in enumerate(taxonomy):
            if isinstance(theme, dict):
                try:
                    ident = scalar_text(theme.get("id"), at(at("themeTaxonomy", i), "id"), "a theme id")
                    label = scalar_text(theme.get("label"), at(at("themeTaxonomy", i), "label"), "a theme label")
                except Bad as exc:
                    collector.problem(exc.location, exc.reason)
                    continue
                if ident and label:
                    names[ident] = label
    return names


class _Catalog:
    def __init__(self, doc: dict[str, Any], display: str, from_json: bool):
        self.collector = EntryCollector(display)
        self.themes = _themes(doc, self.collector)
        # JSON values are JSON already: copying a 38 MB `spatial` value to make it so costs seconds.
        self.jsonable = (lambda value: value) if from_json else jsonable

    def dataset(self, i: int, record: Any) -> None:
        where = at("dataset", i)
        if not isinstance(record, dict):
            raise Bad(where, f"a dataset must be an object, found {type_name(record)}")
        for name in _REQUIRED:
            if name in record and record[name] is None:
                tolerated(at(where, name), f"`{name}` is null (DCAT-US requires it): skipped")
        identifier = _text(record, "identifier", where)
        title = html_to_text(_string(record, "title", where))
        if not identifier and not title:
            raise Bad(where, "a dataset needs an `identifier` or a `title`")
        key = identifier or f"title:{title}"
        description = html_to_text(_string(record, "description", where))
        keywords = text_list(record.get("keyword"), at(where, "keyword"))
        theme_ids = text_list(record.get("theme"), at(where, "theme"))
        themes = [self.themes.get(t, t) for t in theme_ids]
        publisher = _publisher(record.get("publisher"), at(where, "publisher"))
        distributions = _objects(record.get("distribution"), at(where, "distribution"), "`distribution`")
        payload = {
            "identifier": identifier,
            "key_from": None if identifier else "title",
            "title": title,
            "description": description,
            "keywords": keywords,
            "publisher": publisher,
            "themes": themes,
            "theme_ids": theme_ids if themes != theme_ids else None,
            "super_themes": text_list(record.get("superTheme"), at(where, "superTheme")),
            "modified": _text(record, "modified", where),
            "issued": _text(record, "issued", where),
            "access_level": _text(record, "accessLevel", where),
            "license": _text(record, "license", where),
            "rights": _text(record, "rights", where),
            "landing_page": _text(record, "landingPage", where),
            "accrual_periodicity": _text(record, "accrualPeriodicity", where),
            "language": text_list(record.get("language"), at(where, "language")),
            "contact": _contact(record.get("contactPoint"), at(where, "contactPoint")),
            "spatial": self.jsonable(record.get("spatial")),
            "temporal": self.jsonable(record.get("temporal")),
            "distributions": len(distributions) or None,
        }
        extras = []
        if publisher:
            extras.append(f"Publisher: {publisher}")
        if themes:
            extras.append(f"Themes: {', '.join(themes)}")
        text = compose_text("dataset", title or key, {"description": description, "tags": keywords}, extras)
        self.collector.add(where, key, "dataset", payload, text=text)
        for j, dist in distributions:
            try:
                self.distribution(key, title or key, at(at(where, "distribution"), j), j, dist)
            except Bad as exc:
                self.collector.problem(exc.location, exc.reason)

    def distribution(self, dataset_key: str, dataset_title: str, where: str, j: int, record: Any) -> None:
        if not isinstance(record, dict):
            raise Bad(where, f"a distribution must be an object, found {type_name(record)}")
        key = f"{dataset_key}#distribution[{j}]"
        title = html_to_text(_string(record, "title", where))
        fmt = _text(record, "format", where)
        media = _text(record, "mediaType", where)
        description = html_to_text(_string(record, "description", where))
        fields = _objects(record.get("field"), at(where, "field"), "`field`")
        name = title or f"{fmt or media or 'distribution'} of {dataset_title}"
        payload = {
            "dataset": dataset_key,
            "title": title,
            "description": description,
            "format": fmt,
            "media_type": media,
            "download_url": _text(record, "downloadURL", where),
            "access_url": _text(record, "accessURL", where),
            "identifier": _text(record, "identifier", where),
            "file_name": _text(record, "fileName", where),
            "described_by": _text(record, "describedBy", where),
            "conforms_to": _text(record, "conformsTo", where),
            "license": _text(record, "license", where),
            "modified": _text(record, "modified", where),
            "issued": _text(record, "issued", where),
            "fields": len(fields) or None,
        }
        extras = [f"Dataset: {dataset_title}"]
        if fmt or media:
            extras.append(f"Format: {fmt} ({media})" if fmt and media else f"Format: {fmt or media}")
        text = compose_text("distribution", name, {"description": description}, extras)
        self.collector.add(where, key, "distribution", payload, text=text)
        for k, field in fields:
            try:
                self.field(key, name, dataset_title, at(at(where, "field"), k), field)
            except Bad as exc:
                self.collector.problem(exc.location, exc.reason)

    def field(self, dist_key: str, dist_name: str, dataset_title: str, where: str, record: Any) -> None:
        if not isinstance(record, dict):
            raise Bad(where, f"a field must be an object, found {type_name(record)}")
        title = _string(record, "title", where) or _text(record, "name", where)
        if not title:
            raise Bad(where, "a field needs a `title` (its column name)")
        ftype = _text(record, "type", where)
        description = html_to_text(_string(record, "description", where))
        payload = {
            "distribution": dist_key,
            "title": title,
            "description": description,
            "type": ftype,
            "unit": _text(record, "unit", where),
            "id": _text(record, "id", where),
            "special_type": _text(record, "specialType", where),
            "special_type_detail": _text(record, "specialTypeDetail", where),
        }
        extras = [f"Distribution: {dist_name}", f"Dataset: {dataset_title}"]
        if payload["unit"]:
            extras.insert(0, f"Unit: {payload['unit']}")
        text = compose_text("field", title, {"type": ftype, "description": join_text(description)}, extras)
        self.collector.add(where, f"{dist_key}.{title}", "field", payload, text=text)


def parse(path: Path, display: str) -> list[Entry]:
    doc = load_document(path, display).value
    if not isinstance(doc, dict):
        raise CatalogError.single(
            display, "document", f"expected a DCAT catalog object, found {type_name(doc)}"
        )
    if "dataset" not in doc:
        raise CatalogError.single(display, "document", "a DCAT catalog needs a `dataset` list")
    datasets = doc["dataset"]
    if not isinstance(datasets, list):
        raise CatalogError.single(
            display, "dataset", f"`dataset` must be a list, found {type_name(datasets)}"
        )
    catalog = _Catalog(doc, display, path.suffix.lower() not in YAML_SUFFIXES)
    for i, record in enumerate(datasets):
        try:
            catalog.dataset(i, record)
        except Bad as exc:
            catalog.collector.problem(exc.location, exc.reason)
    return catalog.collector.finish()


FORMAT = Format("dcat", (".json",), detect=detect, parse=parse)
