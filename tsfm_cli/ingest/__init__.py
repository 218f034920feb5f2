"""`tsfm ingest`: messy factory sensor CSVs → clean parquet with missing-value masks.

Modules, one job each: `sniff` (bytes → lines, encoding, delimiter, header), `table` (lines →
cells, malformed lines), `timestamps` (parsing, time zones), `values` (numbers, sentinels),
`layout` (wide/long → readings), `groups` (line/machine keys), `reader` (one file end to end),
`grid` (duplicates, regular grid), `faults` (range, spike, stuck), `fill` (gap filling),
`report` (report.parquet, quality.png) and `stage` (`run_ingest`).
"""

from tsfm_cli.ingest.config import IngestConfig
from tsfm_cli.ingest.stage import run_ingest

__all__ = ["IngestConfig", "run_ingest"]
