"""Files that could not be read, grouped by the kind of error, capped."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

#: Caps that bound the file size of big runs; each capped list states what it left out.
MAX_ERRORS_PER_KIND = 25
MAX_ERRORS = 200


_ERROR_KIND = re.compile(r"^\s*([^:(\n]{1,60}?)\s*[:(]")


def error_kind(reason: str) -> str:
    """The kind of a decode error: its text before the first ':' or '(', else its first four
    words (e.g. 'cannot identify image file: x.png' -> 'cannot identify image file')."""
    text = str(reason).strip()
    match = _ERROR_KIND.match(text)
    if match and match.group(1).strip():
        return match.group(1).strip()
    return " ".join(text.split()[:4]) or "unknown error"


def errors_section(samples: pd.DataFrame) -> dict[str, Any]:
    bad = samples[samples["status"] != "ok"]
    if bad.empty:
        return {"n": 0, "groups": [], "left_out": 0}
    reasons = bad["error"].fillna("").astype(str) if "error" in bad else pd.Series("", bad.index)
    kinds = reasons.map(error_kind)
    groups, shown = [], 0
    for kind, idx in sorted(kinds.groupby(kinds).groups.items(), key=lambda kv: -len(kv[1])):
        room = min(MAX_ERRORS_PER_KIND, MAX_ERRORS - shown)
        rows = bad.loc[idx[:max(room, 0)]]
        files = [{"path": str(r.get("rel_path") or r.get("path", "")),
                  "reason": str(r.get("error", ""))} for r in rows.to_dict("records")]
        shown += len(files)
        groups.append({"kind": kind, "n": len(idx), "files": files,
                       "left_out": len(idx) - len(files)})
    return {"n": len(bad), "groups": groups, "left_out": len(bad) - shown}
