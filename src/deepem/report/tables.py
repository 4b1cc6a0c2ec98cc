"""Result tables as Markdown and CSV, from a list of flat records."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any


def _fmt(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], digits: int = 2) -> str:
    """columns: (key, header) pairs, in order."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(_fmt(r.get(k), digits) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body]) + "\n"


def csv_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([k for k, _ in columns])
    for r in rows:
        writer.writerow([r.get(k, "") for k, _ in columns])
    return out.getvalue()
