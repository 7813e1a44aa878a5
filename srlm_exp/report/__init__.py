"""Report command: aggregate every job's ``summary.json`` under a directory into
``report.md`` (tables over models M0, M1, M2, ... with mean ± std over seeds, per
variant; paired differences M(t) − M1 and M(t) − M0 on the same prompts with a 95% interval)
and PNG plots (metrics over iterations; win/tie/loss bars as in the paper's Fig. 3).
Entry point: ``srlm-report DIR [--out OUT] [--by KEY ...] [--csv PATH]`` / ``python -m srlm_exp.report``.
"""

from .cli import main

__all__ = ["main"]
