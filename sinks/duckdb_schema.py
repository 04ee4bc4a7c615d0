"""DDL of the warehouse: data tables from the ``TABLES`` registry, the sink's own bookkeeping tables, views.

``ensure_schema`` is idempotent and runs at every sink start inside one transaction: it creates what is
missing and adds columns that a newer Avro version introduced (nullable: older rows have NULL). It never drops
or retypes a column; a stored column whose type differs from the contract stops the sink with
:class:`SchemaMismatchError` (an Avro change that is not a legal evolution, fix the contract or migrate by hand).

Data tables have no ``PRIMARY KEY`` (their key columns are ``NOT NULL``). Keys stay unique because the sink is
the only writer and writes every table through one ``MERGE`` per batch on the key, from a source already cut
to one row per key (``sinks.columnar.first_per_key``). Why not an index: DuckDB executes ``INSERT … ON
CONFLICT`` as that same join against the table anyway, so the ART index bought no lookups, only costs: index
maintenance on every insert (the upserts ran ~2x slower), memory (ART indexes must fit in RAM), and file
size (the throughput bench's file: 73 MB with the indexes, 18 MB without), which every snapshot copies.
Tables created by older versions keep their key index; the same statements work on them (slower).

Bookkeeping tables (underscore names, not for marketing):

* ``_sink_offsets(topic, partition, next_offset, committed_at)``: where each partition resumes; written in the
  same transaction as the rows, which is the whole effectively-once argument.
* ``_sink_rejects(topic, partition, offset, error, value, stored_at)``: messages that could not be decoded.
* ``_identity_alias(old_id, final_id)``: every absorbed profile id and the id that finally survives it.
* ``_sink_meta(key, value)``: e.g. ``snapshot_published_at`` (epoch ms), copied into every snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from sinks.tables import BoundTable

OFFSETS = "_sink_offsets"
REJECTS = "_sink_rejects"
ALIAS = "_identity_alias"
META = "_sink_meta"
ERASED = "_erased"  # sinks/erasure.py: tokens of what was erased (the sink's copy of the suppression list)
ERASURE_LOG = "_erasure_log"  # sinks/erasure.py: rows each erasure request removed, per table

_SYSTEM_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {OFFSETS} (
        topic VARCHAR NOT NULL, "partition" INTEGER NOT NULL, next_offset BIGINT NOT NULL,
        committed_at TIMESTAMP NOT NULL, PRIMARY KEY (topic, "partition"))""",
    f"""CREATE TABLE IF NOT EXISTS {REJECTS} (
        topic VARCHAR NOT NULL, "partition" INTEGER NOT NULL, "offset" BIGINT NOT NULL, error VARCHAR NOT NULL,
        value BLOB, stored_at TIMESTAMP NOT NULL, PRIMARY KEY (topic, "partition", "offset"))""",
    f"CREATE TABLE IF NOT EXISTS {ALIAS} (old_id VARCHAR PRIMARY KEY, final_id VARCHAR NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {META} (key VARCHAR PRIMARY KEY, value VARCHAR)",
    f"""CREATE TABLE IF NOT EXISTS {ERASED} (token VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL,
        request_id VARCHAR NOT NULL, erased_at TIMESTAMP NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {ERASURE_LOG} (request_id VARCHAR NOT NULL, table_name VARCHAR NOT NULL,
        rows_deleted BIGINT NOT NULL, erased_at TIMESTAMP NOT NULL)""",
)


@dataclass(frozen=True)
class View:
    """A convenience view, created when every table it reads is part of the sink."""

    name: str
    needs: tuple[str, ...]
    sql: str
    doc: str


VIEWS: tuple[View, ...] = (
    View(
        "live_sessions",
        ("sessions",),
        "SELECT * FROM sessions WHERE status <> 'merged'",
        "Sessions without the tombstones of sessions merged into another.",
    ),
    View(
        "daily_channel_metrics",
        ("sessions",),
        """SELECT CAST(s.start_ms AS DATE) AS day, ch.channel AS channel, s.currency AS currency,
                  count(*) AS sessions, count(DISTINCT s.customer_id) AS customers,
                  count(*) FILTER (WHERE len(s.products_bought) > 0) AS purchasing_sessions,
                  sum(s.revenue_minor) AS revenue_minor,
                  count(*) FILTER (WHERE len(s.channels) > 1) AS cross_channel_sessions
           FROM live_sessions AS s, unnest(s.channels) AS ch(channel) GROUP BY ALL""",
        "Per UTC day, channel and currency: sessions touching the channel, customers, purchasing sessions, "
        "revenue of those sessions in that currency (a cross-channel session counts once for each of its "
        "channels; sessions without a purchase have no currency).",
    ),
    View(
        "session_baskets",
        ("sessions",),
        """SELECT session_id, customer_id, CAST(start_ms AS DATE) AS day, channel_path,
                  list_sort(list_distinct(products_bought)) AS items,
                  list_contains(channels, 'store') AND (list_contains(channels, 'web')
                      OR list_contains(channels, 'mobile')) AS online_and_store
           FROM live_sessions WHERE len(products_bought) > 0""",
        "One basket per purchasing session: the distinct products bought in it, on any channel (an online order "
        "and the store receipt of one session form one basket); carted but unbought products are not in it.",
    ),
    View(
        "campaign_exposures",
        ("sessions",),
        """SELECT c.campaign_id AS campaign_id, s.session_id, s.customer_id, s.start_ms,
                  CAST(s.start_ms AS DATE) AS day, s.channel_path, s.revenue_minor,
                  len(s.products_bought) > 0 AS converted
           FROM live_sessions AS s, unnest(s.campaign_ids) AS c(campaign_id)""",
        "One row per session that carried a campaign (UTM or send id), with what the session bought.",
    ),
    View(
        "campaign_outcomes",
        ("sessions", "signals"),
        """SELECT g.signal_id, g.signal_type, g.campaign_id, g.customer_id, g.holdout, g.event_time,
                  count(s.session_id) > 0 AS converted_7d, any_value(s.currency) AS currency,
                  CASE WHEN count(DISTINCT s.currency) <= 1 THEN coalesce(sum(s.revenue_minor), 0) END
                      AS revenue_7d_minor
           FROM signals AS g LEFT JOIN live_sessions AS s
             ON s.customer_id = g.customer_id AND len(s.products_bought) > 0
            AND s.start_ms > g.event_time AND s.start_ms <= g.event_time + INTERVAL 7 DAY
           GROUP BY ALL""",
        "Every signal (treated or randomised holdout) with whether its customer bought within 7 days after it "
        "and for how much (in `currency`; NULL when the purchases were in several currencies): the input of the "
        "uplift report.",
    ),
    View(
        "daily_channel_events",
        ("customer_events",),
        """SELECT CAST(event_time AS DATE) AS day, channel, event_type, currency, count(*) AS events,
                  sum(amount_minor) AS amount_minor
           FROM customer_events GROUP BY ALL""",
        "Canonical events per UTC day, channel, event type and currency (amounts never summed across "
        "currencies).",
    ),
    View(
        "purchases",
        ("order_lines",),
        """SELECT customer_id, event_id, any_value(order_id) AS order_id, min(event_time) AS event_time,
                  any_value(channel) AS channel, any_value(store_id) AS store_id, currency,
                  sum(quantity) AS items, sum(amount_minor) AS amount_minor, sum(amount_minor) / 100.0 AS amount
           FROM order_lines GROUP BY customer_id, event_id, currency""",
        "One row per purchase (its order lines summed): what `omnistream model fit --duckdb` reads. `amount` is "
        "in major units for two-decimal currencies (amount_minor / 100).",
    ),
)


class SchemaMismatchError(RuntimeError):
    """A stored column's type differs from what the Avro contract now says."""


def quote(name: str) -> str:
    """A DuckDB identifier in double quotes (column names like ``partition`` or ``offset`` are keywords)."""
    return '"' + name.replace('"', '""') + '"'


def ensure_schema(con: duckdb.DuckDBPyConnection, tables: Iterable[BoundTable]) -> None:
    """Create or extend every table and view (one transaction; see the module docstring)."""
    tables = list(tables)
    con.execute("BEGIN TRANSACTION")
    try:
        for ddl in _SYSTEM_DDL:
            con.execute(ddl)
        for table in tables:
            _ensure_table(con, table)
        present = {t.name for t in tables}
        for view in VIEWS:
            if set(view.needs) <= present:
                con.execute(f"CREATE OR REPLACE VIEW {quote(view.name)} AS {view.sql}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _ensure_table(con: duckdb.DuckDBPyConnection, table: BoundTable) -> None:
    existing = dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main'",
            [table.name],
        ).fetchall()
    )
    if not existing:
        # No PRIMARY KEY: the writer's MERGE keeps keys unique (see the module docstring); key columns NOT NULL.
        key = set(table.spec.key)
        cols = [f"{quote(c.name)} {c.sql_type}" + (" NOT NULL" if c.name in key else "") for c in table.columns]
        con.execute(f"CREATE TABLE {quote(table.name)} (" + ", ".join(cols) + ")")
        return
    for column in table.columns:
        canonical = _canonical_type(con, column.sql_type)
        stored = existing.get(column.name)
        if stored is None:
            con.execute(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {column.sql_type}")
        elif (stored, canonical) in _WIDENINGS:  # a newer contract version widened the type (Avro promotion)
            con.execute(f"ALTER TABLE {quote(table.name)} ALTER COLUMN {quote(column.name)} TYPE {column.sql_type}")
        elif stored != canonical:
            raise SchemaMismatchError(
                f"{table.name}.{column.name} is stored as {stored} but {table.spec.subject} now says {canonical}"
            )


#: (stored, wanted) column types a table is altered from in place: the promotions Avro allows a reader.
_WIDENINGS = frozenset({("INTEGER", "BIGINT"), ("INTEGER", "DOUBLE"), ("BIGINT", "DOUBLE"), ("FLOAT", "DOUBLE")})


def _canonical_type(con: duckdb.DuckDBPyConnection, sql_type: str) -> str:
    # DuckDB prints types its own way (quotes, spacing); ask it rather than guess.
    row = con.execute(f"SELECT typeof(CAST(NULL AS {sql_type}))").fetchone()
    assert row is not None
    return str(row[0])
