"""The one redaction step every text bound for a model goes through (:func:`redact_text`).

It applies the recorder's secrets policy (``execscope.instrumentation.capture.redaction``, with the
environment's ``EXECSCOPE_REDACT_*`` extensions) to text (the chain, the source slice and the graph):

* by name: the value after a secret-looking name (``password``, ``token``, ``api_key``, ... and the
  names the environment adds) in ``NAME = value``, ``NAME: value``, ``'NAME': value``, ``NAME=value``
  and the chain's ```NAME` = value`` and ```NAME` became value`` becomes ``<redacted>``;
* by value: every value pattern (bearer tokens, JWTs, cloud keys, card numbers, URL passwords, ...)
  becomes ``<redacted:KIND>``, always on here even when a recording turned patterns off.

Values were already redacted when they were recorded (by the recording's policy); this also covers
secrets written in source code and stores recorded before the policy existed.
"""

from __future__ import annotations

import functools
import re

from execscope.instrumentation.capture.redaction import Policy, policy_from
from execscope.instrumentation.capture.values import REDACTED

# NAME (an identifier, attribute path or quoted key) then = or :, then a quoted string or a bare token
_ASSIGNMENT = re.compile(
    r"""(?P<name>(?:[A-Za-z_][\w.]*|'[^'\n]{1,80}'|"[^"\n]{1,80}"|`[^`\n]{1,80}`))"""
    r"""(?P<sep>[ \t]*(?:=|:)[ \t]*| became )"""
    r"""(?P<value>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|b'(?:[^'\\\n]|\\.)*'|[^\s,;)}\]]+)""")


@functools.lru_cache(maxsize=1)
def model_policy() -> Policy:
    """The policy for text bound for a model: this environment's, value patterns always on."""
    return policy_from(patterns=True, errors=[])


def _replace(match: re.Match[str], policy: Policy) -> str:
    name = match.group("name").strip("'\"`")
    if not policy.is_secret_name(name) or match.group("sep").strip() == "=" and match.group("value").startswith("="):
        return match.group(0)
    return f"{match.group('name')}{match.group('sep')}{REDACTED}"


def redact_text(text: str, policy: Policy | None = None) -> str:
    """``text`` with the value of every secret-looking name replaced by ``<redacted>`` and every
    value that matches a secret pattern by ``<redacted:KIND>``."""
    policy = policy or model_policy()
    return policy.redact_text(_ASSIGNMENT.sub(lambda m: _replace(m, policy), text))


def redact_value(name: str, value: str, policy: Policy | None = None) -> str:
    """A named value: ``<redacted>`` when the name looks like a secret, else the value's text redacted."""
    policy = policy or model_policy()
    return REDACTED if policy.is_secret_name(name) else redact_text(value, policy)
