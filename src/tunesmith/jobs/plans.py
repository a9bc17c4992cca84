"""A job's plan before it is created: its files checked as the job would check them, "auto"
resolved against them, and what it costs. The web UI shows it before a launch; nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.data.checks import Report
from tunesmith.jobs.service import check_files
from tunesmith.train.config import Resolved, SFTConfig, resolve

if TYPE_CHECKING:
    from tunesmith.store import Store


@dataclass
class Plan:
    config: SFTConfig
    report: Report
    resolved: Resolved | None  # None when the data has errors: there is nothing to resolve against


def plan(
    store: Store, config: SFTConfig, training_file: str, validation_file: str | None = None
) -> Plan:
    """Check the files (bad data is in the report, not raised; a bad grader or a missing file
    is) and resolve the run's numbers."""
    report = check_files(store, config, training_file, validation_file)
    resolved = resolve(config, report.n_examples) if report.ok and report.n_examples else None
    return Plan(config, report, resolved)
