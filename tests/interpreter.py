"""What the running interpreter itself says, for tests whose expected text quotes it (wording changes
between CPython versions)."""

from __future__ import annotations

try:
    _ = 1 // 0
except ZeroDivisionError as _e:
    INT_DIV_ZERO = str(_e)
    """``1 // 0``'s message: 'integer division or modulo by zero' up to 3.13, 'division by zero' from 3.14."""
