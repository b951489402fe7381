"""Analytics without a BI server: DuckDB analyses over a Parquet snapshot of the service database.

``qbank analytics export`` (the service side, ``service/analytics_export.py``) writes the
snapshot from the database, or ``qbank analytics consume`` from the event stream that
``qbank relay`` publishes (:mod:`._stream`); this package reads it with no web or ORM dependency:

>>> con = open_snapshot("snapshot/")                       # doctest: +SKIP
>>> topic_mastery(con).head()                               # doctest: +SKIP
>>> write_report("snapshot/", "report/")                    # doctest: +SKIP

The four analyses match the service database's views ``analytics_topic_mastery``,
``analytics_blueprint_coverage``, ``analytics_item_exposure_daily`` and
``analytics_selector_outcomes`` column for column.
"""

from ._analyses import (
    ANALYSES,
    blueprint_coverage,
    compare_with_views,
    item_exposure_daily,
    run_analyses,
    selector_outcomes,
    topic_mastery,
)
from ._report import AnalyticsReport, write_report
from ._snapshot import FACT_SCHEMAS, SNAPSHOT_SCHEMA, SnapshotError, open_snapshot, read_manifest
from ._stream import facts_from_events, read_nats_stream, write_stream_snapshot

__all__ = [
    "ANALYSES",
    "FACT_SCHEMAS",
    "SNAPSHOT_SCHEMA",
    "AnalyticsReport",
    "SnapshotError",
    "blueprint_coverage",
    "compare_with_views",
    "facts_from_events",
    "item_exposure_daily",
    "open_snapshot",
    "read_manifest",
    "read_nats_stream",
    "run_analyses",
    "selector_outcomes",
    "topic_mastery",
    "write_report",
    "write_stream_snapshot",
]
