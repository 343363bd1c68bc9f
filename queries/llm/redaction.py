"""The one redaction step every text bound for a model goes through (:func:`redact_text`).

For now it applies the recorder's own rule (``execscope.instrumentation.capture.values``: a value
whose name looks like a secret — ``password``, ``token``, ``api_key``, ... — becomes ``<redacted>``)
to text (the chain, the source slice and the graph): ``NAME = value``, ``NAME: value``,
``'NAME': value``, ``NAME=value`` and the chain's ```NAME` = value`` and ```NAME` became value``.
Values were already redacted by name when they were recorded; this also covers secrets written in
source code. When the recorder's full secrets policy (names and value patterns, branch ``secrets``)
lands, this function is the single place to point at it.
"""

from __future__ import annotations

import re

from execscope.instrumentation.capture.values import REDACTED, SECRET_NAME

# NAME (an identifier, attribute path or quoted key) then = or :, then a quoted string or a bare token
_ASSIGNMENT = re.compile(
    r"""(?P<name>(?:[A-Za-z_][\w.]*|'[^'\n]{1,80}'|"[^"\n]{1,80}"|`[^`\n]{1,80}`))"""
    r"""(?P<sep>[ \t]*(?:=|:)[ \t]*| became )"""
    r"""(?P<value>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|b'(?:[^'\\\n]|\\.)*'|[^\s,;)}\]]+)""")


def _replace(match: re.Match[str]) -> str:
    name = match.group("name").strip("'\"`")
    if not SECRET_NAME.search(name) or match.group("sep").strip() == "=" and match.group("value").startswith("="):
        return match.group(0)
    return f"{match.group('name')}{match.group('sep')}{REDACTED}"


def redact_text(text: str) -> str:
    """``text`` with the value of every secret-looking name replaced by ``<redacted>``."""
    return _ASSIGNMENT.sub(_replace, text)


def redact_value(name: str, value: str) -> str:
    """A named value: ``<redacted>`` when the name looks like a secret, else the value's text redacted."""
    return REDACTED if SECRET_NAME.search(name) else redact_text(value)
