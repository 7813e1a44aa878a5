"""summary.json: the contract that reports read — one entry per model, rewritten after each."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from srlm_exp.artifacts import write_json
from srlm_exp.distributed import is_main
from srlm_exp.phases import job_peak_rss_gb


def clean(obj: Any) -> Any:
    """NaN/inf become null: JSON has no NaN, and an undefined metric must not read as a number."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "item"):
        return clean(obj.item())
    return obj


class Summary:
    def __init__(self, path: Path, job: dict[str, Any]):
        self.path = Path(path)
        self.data: dict[str, Any] = {"job": job, "status": "running", "iterations": []}
        if self.path.exists():  # resume: keep what earlier attempts measured
            old = json.loads(self.path.read_text())
            self.data["iterations"] = old.get("iterations", [])
            if isinstance(old.get("peak_rss_gb"), (int, float)):  # the job's peak over its attempts
                self.data["peak_rss_gb"] = old["peak_rss_gb"]

    def entry(self, iteration: int) -> dict[str, Any] | None:
        return next((e for e in self.data["iterations"] if e["iteration"] == iteration), None)

    def put(self, entry: dict[str, Any]) -> None:
        self.data["iterations"] = [e for e in self.data["iterations"] if e["iteration"] != entry["iteration"]]
        self.data["iterations"].append(clean(entry))
        self.data["iterations"].sort(key=lambda e: e["iteration"])
        self.save()

    def set_status(self, status: str, error: str | None = None, rank_errors: dict[str, str] | None = None) -> None:
        """`rank_errors`: what other ranks failed with (their error is often the cause of this one's)."""
        self.data["status"] = status
        for key, value in (("error", error), ("rank_errors", rank_errors)):
            if value:
                self.data[key] = value
            else:
                self.data.pop(key, None)
        self.save()

    def save(self) -> None:
        peak = job_peak_rss_gb()  # this process's and its children's peak resident memory so far
        if peak is not None:
            self.data["peak_rss_gb"] = max(peak, self.data.get("peak_rss_gb") or 0.0)
        if is_main():  # every rank keeps the same entries; rank 0 alone writes them
            write_json(self.path, clean(self.data))
