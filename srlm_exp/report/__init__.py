"""Report command: aggregate every job's ``summary.json`` under a directory into
``report.md`` (tables over models M0, M1, M2, ... with mean ± std over seeds, per
variant) and PNG plots (metrics over iterations; win/tie/loss bars as in the paper's
Fig. 3). Entry point: ``srlm-report DIR [--out OUT]`` / ``python -m srlm_exp.report``.
"""

from .cli import main

__all__ = ["main"]
