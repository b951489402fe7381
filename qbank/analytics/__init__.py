"""Analytics without a BI server: DuckDB analyses over a Parquet snapshot of the service database.

``qbank analytics export`` (the service side, ``service/analytics_export.py``) writes the
snapshot; this package reads it with no web or ORM dependency:

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

__all__ = [
    "SNAPSHOT_SCHEMA", "FACT_SCHEMAS", "SnapshotError", "open_snapshot", "read_manifest",
    "ANALYSES", "topic_mastery", "blueprint_coverage", "item_exposure_daily", "selector_outcomes",
    "run_analyses", "compare_with_views",
    "AnalyticsReport", "write_report",
]
