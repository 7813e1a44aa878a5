"""``python -m srlm_exp.report DIR [--out OUT]``."""

from .cli import main

raise SystemExit(main())
