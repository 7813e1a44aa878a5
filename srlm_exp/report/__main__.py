"""``python -m srlm_exp.report DIR [--out OUT] [--by KEY ...] [--csv PATH]``."""

from .cli import main

raise SystemExit(main())
