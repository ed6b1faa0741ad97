"""Deterministic synthetic warehouse catalogs: column (and table) descriptions of varied length.

Pure standard library, so the LangChain runner (another virtualenv) imports the very same texts.
Entry `i` of a catalog depends only on (seed, i): any size is a prefix of any larger size, and the
"changed" / "removed" scenarios pick their entries by index, deterministically.

    python benchmarks/synthetic.py --size 5 --seed 7     # print a few entries
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from typing import NamedTuple

DOMAINS = {
    "sales": ["orders", "order_lines", "returns", "quotes", "invoices", "discounts", "channels", "price_lists"],
    "finance": ["ledger", "journal_entries", "accounts", "budgets", "fx_rates", "payments", "cost_centers", "tax_codes"],
    "crm": ["customers", "contacts", "accounts", "leads", "opportunities", "segments", "consents", "households"],
    "marketing": ["campaigns", "events", "sessions", "attributions", "emails", "audiences", "ad_spend", "coupons"],
    "inventory": ["stock_levels", "warehouses", "bins", "movements", "counts", "suppliers", "purchase_orders", "skus"],
    "logistics": ["shipments", "parcels", "carriers", "routes", "deliveries", "returns_labels", "depots", "tracking"],
    "hr": ["employees", "positions", "payroll", "absences", "departments", "contracts", "reviews", "trainings"],
    "support": ["tickets", "conversations", "agents", "sla_policies", "csat", "macros", "escalations", "queues"],
    "product": ["products", "variants", "categories", "attributes", "reviews", "bundles", "images", "assortments"],
    "billing": ["subscriptions", "plans", "usage", "credits", "dunning", "refunds", "invoice_lines", "meters"],
}
SUBJECTS = [
    "customer", "order", "invoice", "payment", "shipment", "product", "store", "campaign", "employee", "supplier",
    "account", "ticket", "session", "device", "contract", "region", "currency", "warehouse", "carrier", "plan",
]
MEASURES = [
    "amount", "quantity", "count", "rate", "score", "duration", "weight", "price", "cost", "margin", "balance",
    "discount", "tax", "revenue", "volume", "latency", "age", "distance", "share", "ratio",
]
SUFFIXES = ["id", "key", "code", "status", "type", "name", "date", "at", "flag", "number", "reason", "source", "level"]
QUALIFIERS = ["gross", "net", "local", "reported", "adjusted", "billed", "expected", "actual", "last", "first", "total"]
TYPES = ["bigint", "integer", "numeric(18,2)", "numeric(12,4)", "varchar(64)", "varchar(255)", "text", "date",
         "timestamp with time zone", "boolean", "char(3)", "jsonb", "uuid", "smallint", "double precision"]
TAGS = ["pii", "finance", "core", "derived", "identifier", "foreign_key", "primary_key", "audit", "gdpr", "kpi",
        "slowly_changing", "partition_key", "deprecated", "customer_facing", "internal", "metric", "dimension"]
RULES = ["not_null", "unique", "accepted_values: [active, inactive, pending]", "non_negative", "matches_regex: ^[A-Z]{3}$",
         "references: crm.customers.customer_id", "between: [0, 1]", "freshness: 24h", "max_length: 255", "no_future_dates"]
SOURCES = ["the order management system (OMS)", "the ERP general ledger", "the CRM export", "the web analytics stream",
           "the warehouse management system", "the payroll provider", "the ticketing tool", "the payment gateway",
           "the product information system", "the billing engine", "a nightly batch from the data lake", "a Kafka topic"]
CADENCES = ["hourly", "nightly", "every 15 minutes", "weekly", "on change (CDC)", "daily at 02:00 UTC"]
CAVEATS = [
    "Null when the value was not captured at the point of sale.",
    "Values before 2019 were backfilled from the legacy system and may be approximate.",
    "Expressed in the reporting currency after conversion at the daily rate.",
    "Cancelled and test records are excluded upstream.",
    "Rounded to two decimals; sum of lines may differ from the header by a cent.",
    "Personal data: masked for analysts without the GDPR role.",
    "Late-arriving records can update this value for up to seven days.",
    "Derived in dbt from the staging model; do not edit by hand.",
    "Time zone is UTC; convert to the store's local time for daily reports.",
    "Duplicates are possible when the upstream load replays a batch; deduplicate on the surrogate key.",
    "Used by finance for month-end close; changes require a ticket.",
    "Zero means the value was explicitly reported as none, not unknown.",
]
PURPOSES = [
    "used to join {table} to {other}", "the basis of the {measure} KPI on the executive dashboard",
    "reported to regulators each quarter", "used by the data science team for churn models",
    "shown to customers on receipts and e-mails", "the grain of the {table} fact", "input to the {measure} forecast",
    "used to partition the table by month", "part of the natural key together with the {subject} reference",
]


class SyntheticEntry(NamedTuple):
    key: str
    kind: str
    text: str
    payload: dict


def _column_name(rng: random.Random) -> tuple[str, str, str]:
    pattern = rng.random()
    subject, measure, suffix = rng.choice(SUBJECTS), rng.choice(MEASURES), rng.choice(SUFFIXES)
    if pattern < 0.4:
        return f"{subject}_{suffix}", subject, measure
    if pattern < 0.75:
        return f"{rng.choice(QUALIFIERS)}_{measure}", subject, measure
    return f"{subject}_{measure}_{suffix}", subject, measure


def entry(seed: int, i: int) -> SyntheticEntry:
    """Entry number `i` of the catalog generated from `seed` (a table entry every 25th, else a column)."""
    rng = random.Random(seed * 1_000_003 + i)
    domain = rng.choice(list(DOMAINS))
    table = f"{rng.choice(DOMAINS[domain])}_{i // 400:04d}"  # ~400 entries per table name
    other = rng.choice(DOMAINS[rng.choice(list(DOMAINS))])
    if i % 25 == 0:
        kind, name, type_ = "table", table, None
        key = f"{domain}.{table}#{i}"
        head = (f"table {domain}.{table}: One row per {rng.choice(SUBJECTS)} {rng.choice(['event', 'version', 'day', 'record'])}, "
                f"loaded {rng.choice(CADENCES)} from {rng.choice(SOURCES)}")
    else:
        column, subject, measure = _column_name(rng)
        kind, name, type_ = "column", f"{table}.{column}", rng.choice(TYPES)
        key = f"{domain}.{table}.{column}#{i}"
        purpose = rng.choice(PURPOSES).format(table=table, other=other, measure=measure, subject=subject)
        head = (f"column {domain}.{name} ({type_}): The {rng.choice(QUALIFIERS)} {measure} of the {subject}, "
                f"{purpose}, loaded {rng.choice(CADENCES)} from {rng.choice(SOURCES)}")
    sentences = [head]
    for caveat in rng.sample(CAVEATS, rng.choice([0, 0, 0, 1, 1, 2])):  # varied length: ~15-60 words
        sentences.append(caveat.rstrip("."))
    tags = rng.sample(TAGS, rng.randint(0, 3))
    rules = rng.sample(RULES, rng.randint(0, 2))
    if tags:
        sentences.append("Tags: " + ", ".join(tags))
    if rules:
        sentences.append("Rules: " + "; ".join(rules))
    payload = {"domain": domain, "table": table, "name": name, "owner": f"{domain}-data@example.com"}
    if type_:
        payload["type"] = type_
    if tags:
        payload["tags"] = tags
    return SyntheticEntry(key, kind, ". ".join(sentences) + ".", payload)


def entries(size: int, seed: int = 42) -> Iterator[SyntheticEntry]:
    for i in range(size):
        yield entry(seed, i)


def changed(e: SyntheticEntry, generation: int = 1) -> SyntheticEntry:
    """The same entry with edited content (its text gains a sentence: it must be re-embedded)."""
    return e._replace(text=e.text[:-1] + f". Revised in change set {generation}: definition clarified by the data owner.")


def every(fraction: float, size: int, salt: int = 0) -> set[int]:
    """A deterministic, evenly spread set of round(fraction * size) indexes."""
    count = round(fraction * size)
    rng = random.Random(1_234_567 + salt)
    return set(rng.sample(range(size), count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--stats", action="store_true", help="print word-count statistics instead of entries")
    args = parser.parse_args()
    if args.stats:
        words = sorted(len(e.text.split()) for e in entries(args.size, args.seed))
        texts = {e.text for e in entries(args.size, args.seed)}
        print(json.dumps({"entries": args.size, "distinct_texts": len(texts), "words_min": words[0],
                          "words_median": words[len(words) // 2], "words_max": words[-1]}))
        return
    for e in entries(args.size, args.seed):
        print(json.dumps(e._asdict(), ensure_ascii=False))


if __name__ == "__main__":
    main()
