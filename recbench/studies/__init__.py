"""Studies (sweeps and ablations), one module per job: expand a study into ordinary runs, run
what is missing, collect the finished ones, compute the table's statistics, write the report.

Every variant × experiment × seed is one run directory identified by the hash of its resolved
config, so a study that is started again reuses finished runs, resumes a partial one from its
``last.pt`` and only runs what is missing. Aggregation reads the run directories (or the
study's ledger records) alone.

- :mod:`.schema`: the study file, its loading and its variants (and ``sweep``'s ad-hoc study)
- :mod:`.planning`: the planned runs and the finished run or record of each
- :mod:`.run`: training the unfinished ones on an executor
- :mod:`.collect`: reading finished runs into per-cell figures
- :mod:`.statistics`: mean ± std, intervals, paired tests, Holm, verdicts, guards
- :mod:`.ledger`: the committed record of a study's runs
- :mod:`.report`, :mod:`.tables`, :mod:`.search`: the files under results/STUDY/

The names below are the package's interface; the use case that joins the jobs for a command
is :mod:`recbench.study_session`.
"""

from recbench.studies.cells import Cell, PlannedRun, StudyResult, TableRow
from recbench.studies.collect import (
    check_per_unit,
    collect,
    column_value,
    figure,
    per_unit_means,
    table_rows,
)
from recbench.studies.ledger import LEDGER, as_recorded, other_ledgers, write_ledger, written_from_ledger
from recbench.studies.planning import cell_configs, current_data, plan, refresh, select, split_names
from recbench.studies.run import execute, run_planned
from recbench.studies.schema import (
    ExtraTable,
    StudyConfig,
    TableColumn,
    adhoc,
    count_runs,
    list_studies,
    load_study,
    parse_seeds,
    read_study,
    variant_patches,
)
from recbench.studies.statistics import (
    aggregate,
    mark_guard,
    paired_p_value,
    paired_units,
    pooled_units,
    wilcoxon_p,
)

__all__ = [
    "LEDGER", "Cell", "ExtraTable", "PlannedRun", "StudyConfig", "StudyResult", "TableColumn",
    "TableRow", "adhoc", "aggregate", "as_recorded", "cell_configs", "check_per_unit", "collect",
    "column_value", "count_runs", "current_data", "execute", "figure", "list_studies",
    "load_study", "mark_guard", "other_ledgers", "paired_p_value", "paired_units", "parse_seeds",
    "per_unit_means", "plan", "pooled_units", "read_study", "refresh", "run_planned", "select",
    "split_names", "table_rows", "variant_patches", "wilcoxon_p", "write_ledger",
    "written_from_ledger",
]
