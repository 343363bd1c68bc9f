"""Printing rows: an aligned table for people, one JSON document for programs (stdout only)."""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any, TextIO

MAX_CELL = 80


def jsonable(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def print_rows(column_names: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str,
               out: TextIO = sys.stdout) -> None:
    if fmt == "json":
        json.dump([{c: jsonable(v) for c, v in zip(column_names, row)} for row in rows], out)
        out.write("\n")
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in column_names]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row)]
    out.write("  ".join(c.ljust(w) for c, w in zip(column_names, widths)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def _cell(value: Any) -> str:
    value = jsonable(value)
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
