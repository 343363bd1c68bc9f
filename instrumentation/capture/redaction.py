"""The secrets policy: what never reaches the store, by name and by value pattern.

One policy, used everywhere a value becomes text: both capture cores (the C renderer ``_repr.c`` is
handed its data by :mod:`.values`), the OTLP encoder, the collector's ``redact`` processor (for
spans other SDKs recorded), and ``execscope redact-check`` / ``execscope storage scrub``.

**By name.** A value whose name looks like a secret (:data:`DEFAULT_NAMES`: ``password``,
``token``, ``api_key``, ``authorization``, ...) is stored as ``<redacted>``: an argument, a variable,
an attribute, and, inside values at every depth the renderer walks, a dict value under such a key,
a namedtuple or namespace field of such a name, and the value of a ``(name, value)`` pair (HTTP
headers as a list of tuples).

**By value.** Text holding a known secret format has that part replaced by ``<redacted:KIND>``
(:data:`RULES`, in order): PEM private keys, JWTs, bearer and basic credentials, passwords in URLs
(``postgres://admin:<redacted:password>@host/app``) and in connection strings, authorization headers,
GitHub / GitLab / Slack / Stripe / OpenAI-style / Google API / AWS keys, and card numbers that pass
the Luhn check. On by default. Cheap on the hot path: a value runs a rule's regex only when a bounded
scan of its text finds that rule's trigger (a literal such as ``akia`` or ``://``, case-insensitive,
or a run of 13 card digits, or a 40-character base64 run); values that cannot match (nearly all of
them) pay for that one scan (in C with the native core: see ``_repr.c``).

**Configuration** (the list is data): the environment of the recorded program and of the collector:

``EXECSCOPE_REDACT_PATTERNS=0``      value patterns off (names are always redacted)
``EXECSCOPE_REDACT_NAMES=a,b``       more secret names (case-insensitive substrings)
``EXECSCOPE_REDACT_DISABLE=k1,k2``   kinds left alone (e.g. ``card-number``)
``EXECSCOPE_REDACT_RULE_<KIND>=RE``  one more rule (``EXECSCOPE_REDACT_RULE_ACME_TOKEN='acme_[0-9a-f]{32}'``
                                     hides ``<redacted:acme-token>``); its trigger is the regex's literal
                                     prefix, or ``triggers|regex`` (``acme_,acm-|acme?[_-][0-9a-f]{32}``)
``EXECSCOPE_REDACT_CONFIG=FILE``     the ``redact`` entry of a processors file (TOML/JSON; what
                                     ``execscope run --processors FILE`` hands to the program)

and the ``redact`` entry of a processors file: ``keys`` (names), ``rules`` (tables of ``kind``,
``regex``, optional ``triggers``), ``value_patterns`` (regexes, kind ``custom``), ``disable`` (kinds),
``scan_values`` (false: patterns off).

Pure data and the standard library: imported by capture (never by anything heavier at start-up);
regexes are compiled on first use.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REDACTED = "<redacted>"
MARK_PREFIX = "<redacted"
LEGACY_MARKERS = ("[REDACTED]", "***")
SCAN_SLACK = 256
"""A leaf string is scanned over its first ``max_chars + SCAN_SLACK`` characters (the rest is never
stored): a secret straddling the cut is still recognised whole."""

DEFAULT_NAMES = (r"pass(wd|word)?|secret|token|api[_-]?key|apikey|auth|credential|private[_-]?key|cookie"
                 r"|session[_-]?id|signature|bearer")

ENV_PATTERNS = "EXECSCOPE_REDACT_PATTERNS"
ENV_NAMES = "EXECSCOPE_REDACT_NAMES"
ENV_DISABLE = "EXECSCOPE_REDACT_DISABLE"
ENV_RULE_PREFIX = "EXECSCOPE_REDACT_RULE_"
ENV_CONFIG = "EXECSCOPE_REDACT_CONFIG"


VAR_NAME, VAR_VALUE, ARG_PREFIX = "execscope.var.name", "execscope.var.value", "execscope.arg."


def attribute_name(key: str, attrs: Mapping[str, Any]) -> str:
    """The name an attribute's value goes by for name redaction: an argument's parameter name
    (``execscope.arg.<name>``), an assignment's variable (``execscope.var.value``), none for
    execscope's other own keys (node ids, counts, ...), else the key itself (other SDKs' attributes)."""
    if key.startswith("execscope."):
        if key.startswith(ARG_PREFIX):
            return key[len(ARG_PREFIX):]
        if key == VAR_VALUE:
            return str(attrs.get(VAR_NAME) or "")
        return ""
    return key


def marker(kind: str) -> str:
    return f"<redacted:{kind}>"


def is_marker(text: str) -> bool:
    """Whether ``text`` is what a redaction left (``<redacted>``, ``<redacted:KIND>``, legacy forms)."""
    return text.startswith(MARK_PREFIX) or text in LEGACY_MARKERS


@dataclass(frozen=True)
class Rule:
    """One value pattern. ``regex`` finds it; only the named ``groups`` that matched are replaced
    (none: the whole match); ``check`` validates a match (``luhn``, ``basic``, ``mixed``) so that
    look-alikes stay; the scan hands the text to ``regex`` only when it holds one of ``triggers``
    (literals: all lower-case ones match case-insensitively, others exactly) and, when ``needs`` is
    set, one of its characters too (every match of ``regex`` must hold one), or, for ``detector``
    rules, a run the scanner counts (``digits``: 13 card digits, the first 2-6, single spaces/dashes
    between groups; ``b64run``: exactly 40 base64 characters). A rule with neither runs its regex on
    every text of ``min_len`` or more."""

    kind: str
    regex: str
    triggers: tuple[str, ...] = ()
    detector: str = ""
    groups: tuple[str, ...] = ()
    check: str = ""
    min_len: int = 8
    needs: str = ""


_NOT_MARK = r"(?!<redacted)"
_SPACE = " \t\n\r\f\v"  # what \s matches in ASCII
_KV_TAIL = (r"[\w.-]*[\"']?(?:\s*[=:]\s*" + _NOT_MARK + r"(?:\"(?P<dq>[^\"]+)\"|'(?P<sq>[^']+)')"
            r"|=" + _NOT_MARK + r"(?P<bare>[^\s;,&'\"<>()\[\]{}]+))")
"""After a secret-looking key: ``=value`` (connection strings, query strings), or ``= 'value'`` /
``: "value"`` quoted (JSON, dict and source text); the value is what is replaced."""

RULES: tuple[Rule, ...] = (
    Rule("private-key", r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
         r"(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)", ("-----begin",), min_len=27),
    Rule("jwt", r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?", ("eyJ",), min_len=20,
         needs="."),
    Rule("bearer", r"(?i)\bbearer\s+" + _NOT_MARK + r"(?P<v>[A-Za-z0-9\-._~+/]{8,}=*)", ("bearer",),
         groups=("v",), min_len=15, needs=_SPACE),
    Rule("basic-auth", r"(?i)\bbasic\s+(?P<v>[A-Za-z0-9+/]{6,}={0,2})(?![\w+/=])", ("basic",), groups=("v",),
         check="basic", min_len=12, needs=_SPACE),
    Rule("password", r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:" + _NOT_MARK + r"(?P<v>[^@\s/'\"]+)@",
         ("://",), groups=("v",), min_len=8, needs="@"),
    Rule("authorization", r"(?i)(?<![\w-])(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?" + _NOT_MARK
         + r"(?!bearer\s|basic\s)(?P<v>[^\s,;'\"<>]+(?: [^\s,;'\"<>]+)?)", ("authorization",), groups=("v",),
         min_len=16, needs=":="),
    Rule("github-token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})",
         ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), min_len=34),
    Rule("gitlab-token", r"\bgl(?:pat|dt|rt|ptt|soat|cbt|ft|imt|oas)-[A-Za-z0-9_-]{20,}",
         ("glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "glcbt-", "glft-", "glimt-", "gloas-"), min_len=25),
    Rule("slack-token", r"\b(?:xox[abposr]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,}"
         r"|https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]{8,})",
         ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xapp-", "hooks.slack.com/"), min_len=15),
    Rule("stripe-key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|\bwhsec_[A-Za-z0-9]{20,}",
         ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"), min_len=18),
    Rule("openai-key", r"(?<![\w-])sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", ("sk-",), min_len=23),
    Rule("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", ("AIza",), min_len=39),
    Rule("aws-key", r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}(?![A-Z0-9])",
         ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA"), min_len=20),
    Rule("aws-secret", r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", detector="b64run", check="mixed",
         min_len=40),
    # a run of its own: not inside a hex id or a word (span ids, hashes, uuids hold digit runs)
    Rule("card-number", r"(?<![\w-])\d(?:[ -]?\d){12,18}(?!\w)", detector="digits", check="luhn", min_len=13),
    Rule("password", r"(?i)(?<![\w.-])[\w.-]*(?:password|passwd|pwd)" + _KV_TAIL, ("pass", "pwd"),
         groups=("dq", "sq", "bare"), min_len=5, needs="=:"),
    Rule("secret", r"(?i)(?<![\w.-])[\w.-]*(?:secret|api[_-]?key|apikey|token)" + _KV_TAIL,
         ("secret", "api_key", "api-key", "apikey", "token"), groups=("dq", "sq", "bare"), min_len=8, needs="=:"),
)
"""The built-in value rules, applied in this order (earlier ones hide what later ones would find)."""


# -- checks ---------------------------------------------------------------------------------------

def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_number_ok(text: str) -> bool:
    """A card number: 13-19 digits with an issuer's prefix and length, passing the Luhn check (so
    that nanosecond timestamps, phone numbers and ids are left alone)."""
    digits = "".join(ch for ch in text if "0" <= ch <= "9")
    n = len(digits)
    if not 13 <= n <= 19:
        return False
    two, four = int(digits[:2]), int(digits[:4])
    brand = ((digits[0] == "4" and n in (13, 16, 19))                      # Visa
             or (51 <= two <= 55 and n == 16) or (2221 <= four <= 2720 and n == 16)  # Mastercard
             or (two in (34, 37) and n == 15)                              # American Express
             or (two in (50, 56, 57, 58, 60, 62, 63, 64, 65, 66, 67, 68, 69) and n >= 13)  # Discover, UnionPay, Maestro
             or (3528 <= four <= 3589 and n >= 16)                         # JCB
             or ((300 <= int(digits[:3]) <= 305 or two in (36, 38, 39)) and n >= 14))  # Diners
    return brand and luhn_ok(digits)


def _basic_ok(value: str) -> bool:
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded and all(32 <= b < 127 for b in decoded)


def _mixed_ok(value: str) -> bool:
    return (any(c.isupper() for c in value) and any(c.islower() for c in value)
            and any(c.isdigit() or c in "+/" for c in value))


CHECKS: dict[str, Callable[[str], bool]] = {"luhn": card_number_ok, "basic": _basic_ok, "mixed": _mixed_ok}


# -- the policy -----------------------------------------------------------------------------------

class _Compiled:
    __slots__ = ("rule", "pattern", "check", "replace", "replace_lines")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.pattern = re.compile(rule.regex, re.DOTALL | re.ASCII)  # \b and \w: ASCII (secrets are)
        self.check = CHECKS.get(rule.check)
        mark = marker(rule.kind)
        groups, check = rule.groups, self.check

        def replace(m: re.Match[str], keep_lines: bool = False) -> str:
            whole = m.group(0)
            for name in groups:
                start = m.start(name)
                if start >= 0:
                    hidden = m.group(name)
                    if check is not None and not check(hidden):
                        return whole
                    s = m.start()
                    tail = "\n" * hidden.count("\n") if keep_lines else ""
                    return whole[: start - s] + mark + tail + whole[m.end(name) - s:]
            if groups or (check is not None and not check(whole)):
                return whole
            return mark + ("\n" * whole.count("\n") if keep_lines else "")

        self.replace = replace
        self.replace_lines = lambda m: replace(m, True)


@dataclass
class Policy:
    """What is redacted: secret ``names``, value ``rules`` (in order), ``patterns`` on or off."""

    rules: tuple[Rule, ...] = RULES
    extra_names: tuple[str, ...] = ()
    patterns: bool = True
    disabled: frozenset[str] = frozenset()
    base_names: str = DEFAULT_NAMES
    name_patterns: tuple[str, ...] = ()
    _name_re: re.Pattern[str] = field(init=False, repr=False)
    _names: dict[str, bool] = field(init=False, repr=False, default_factory=dict)
    _compiled: list[_Compiled] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        alternatives = ([self.base_names] if self.base_names else []) + [
            re.escape(n.strip().lower()) for n in self.extra_names if n.strip()] + list(self.name_patterns)
        # no name at all: a pattern that never matches
        self.name_regex = f"(?i)({'|'.join(alternatives)})" if alternatives else r"[^\s\S]"
        self._name_re = re.compile(self.name_regex)
        active = [r for r in self.rules if r.kind not in self.disabled]
        self.active: tuple[Rule, ...] = tuple(active) if self.patterns else ()
        pairs = dict.fromkeys((t, r.needs) for r in self.active for t in r.triggers)
        self.triggers: tuple[str, ...] = tuple(t for t, _n in pairs)
        self.trigger_needs: tuple[str, ...] = tuple(n for _t, n in pairs)
        self._groups = _trigger_groups(tuple(pairs))
        self._gate_set = frozenset(c for g, _e, _f in self._groups for c in g)
        self._ungated = any(not g for g, _e, _f in self._groups)
        self._gated = [(tuple(sorted(g)), _buckets(exact, folded)) for g, exact, folded in self._groups]
        self.card = any(r.detector == "digits" for r in self.active)
        self.b64run = any(r.detector == "b64run" for r in self.active)
        self.always = any(not r.triggers and not r.detector for r in self.active)
        self.min_len = min((r.min_len for r in self.active), default=1 << 30)
        self.scan: Callable[[str], bool] = self._python_scan
        self._scan_cache: dict[str, bool] = {}

    # names ---------------------------------------------------------------------------------------
    def is_secret_name(self, name: str) -> bool:
        """Whether a value under ``name`` (a variable, parameter, key or field) is redacted."""
        hit = self._names.get(name)
        if hit is None:
            hit = bool(self._name_re.search(name))
            if len(self._names) >= 65536:
                self._names.clear()
            self._names[name] = hit
        return hit

    # values --------------------------------------------------------------------------------------
    def _python_scan(self, text: str) -> bool:
        """The prefilter: whether ``text`` may hold a secret (a trigger, a card-digit run, a 40-char
        base64 run). Never a regex over the whole text unless a rule has no trigger. Short texts'
        answers are kept (recorded values repeat: names, keys, labels), a bounded number of them."""
        n = len(text)
        if n < self.min_len:
            return False
        if n <= 64:
            known = self._scan_cache.get(text)
            if known is None:
                known = self._scan(text, n)
                cache = self._scan_cache
                if len(cache) >= 4096:
                    cache.clear()
                cache[text] = known
            return known
        return self._scan(text, n)

    def _scan(self, text: str, n: int) -> bool:
        if self.always:
            return True
        if self.card and n >= 13 and _card_run(text):
            return True
        if self.b64run and n >= 40 and _b64_run40(text):
            return True
        # a trigger can be there only if one of its gate's characters is: C-speed str/set methods
        if n < 32 and not self._ungated and self._gate_set.isdisjoint(text):  # short: one pass over it
            return False
        low = None
        for gate, buckets in self._gated:
            if gate:
                for c in gate:
                    if c in text:
                        break
                else:
                    continue
            for head, exact, triggers in buckets:  # triggers by their first two characters
                if exact:
                    if head in text:
                        for t in triggers:
                            if t in text:
                                return True
                else:
                    if low is None:
                        low = text.lower()
                    if head in low:
                        for t in triggers:
                            if t in low:
                                return True
        return False

    def redact_text(self, text: str) -> str:
        """``text`` with every secret it holds replaced by ``<redacted:KIND>`` (itself when none)."""
        if not self.active or not self.scan(text):
            return text
        return self._apply(text)

    def _rules(self) -> list[_Compiled]:
        if self._compiled is None:
            self._compiled = [_Compiled(r) for r in self.active]
        return self._compiled

    def _apply(self, text: str) -> str:
        low = text.lower()
        for c in self._rules():
            if not _may_apply(c.rule, text, low):
                continue
            new = c.pattern.sub(c.replace, text)
            if new != text:
                text, low = new, new.lower()
        return text

    def redact_source(self, text: str) -> str:
        """:meth:`redact_text` keeping the number of lines (a redacted PEM key leaves its line breaks),
        for source text whose lines are addressed by number."""
        if not self.active or not self.scan(text):
            return text
        low = text.lower()
        for c in self._rules():
            if _may_apply(c.rule, text, low):
                new = c.pattern.sub(c.replace_lines, text)
                if new != text:
                    text, low = new, new.lower()
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        text = data.decode("latin-1")
        red = self.redact_text(text)
        return bytes(data) if red is text else red.encode("latin-1", "replace")

    def findings(self, text: str) -> list[str]:
        """The kinds of secret ``text`` holds (one entry per occurrence); [] when clean."""
        if not self.active or not self.scan(text):
            return []
        found: list[str] = []
        low = text.lower()
        for c in self._rules():
            if not _may_apply(c.rule, text, low):
                continue
            for m in c.pattern.finditer(text):
                if c.replace(m) != m.group(0):
                    found.append(c.rule.kind)
        return found

    def redact_value(self, key: str, value: str) -> str:
        """An attribute's value as stored: ``<redacted>`` under a secret-looking key, else its text
        through the value patterns (markers are left as they are)."""
        if is_marker(value):
            return value
        if key and self.is_secret_name(key):
            return REDACTED
        return self.redact_text(value)

    def redact_attributes(self, attrs: Mapping[str, str]) -> Mapping[str, str]:
        """:meth:`redact_value` of every item, by :func:`attribute_name`; ``attrs`` itself when
        nothing changes."""
        out: dict[str, str] | None = None
        for k, v in attrs.items():
            if type(v) is not str:
                continue
            new = self.redact_value(attribute_name(k, attrs), v)
            if new is not v and new != v:
                if out is None:
                    out = dict(attrs)
                out[k] = new
        return attrs if out is None else out

    def scanner_data(self) -> dict[str, Any]:
        """What the C scanner needs (see ``_repr.c``): the triggers and detectors of this policy."""
        return {"enabled": bool(self.active), "triggers": self.triggers, "needs": self.trigger_needs,
                "card": self.card,
                "b64run": self.b64run, "always": self.always,
                "min_len": self.min_len if self.active else 1 << 30}


_CARD_RUN = re.compile(r"(?<![0-9])[2-6](?:[ -]?[0-9]){12}")
_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/])")


def _card_run(text: str) -> bool:
    # 13 digits, the first 2-6: counted with C-speed str methods before the regex looks for the run
    if not any(map(text.__contains__, "23456")) or sum(map(text.count, "0123456789")) < 13:
        return False
    return _CARD_RUN.search(text) is not None


def _b64_run40(text: str) -> bool:
    if " " in text and max(map(len, text.split())) < 40:  # words too short to hold a 40-char run
        return False
    return _B64_RUN.search(text) is not None


def _case_sensitive(trigger: str) -> bool:
    return trigger != trigger.lower()


_RARE = "_-@/.:="  # characters few texts hold: a trigger holding one is looked for only where one is


def _trigger_groups(pairs: tuple[tuple[str, str], ...]
                    ) -> tuple[tuple[frozenset[str], tuple[str, ...], tuple[str, ...]], ...]:
    """Triggers grouped by their gate: the characters one of which a text must hold for the trigger
    to count (its rule's ``needs``, else a rare character of the trigger, else a case-sensitive
    trigger's first character; "" for none). (gate, exact triggers, case-insensitive ones)."""
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for t, needs in pairs:
        gate = needs or next((c for c in _RARE if c in t), "") or (t[0] if _case_sensitive(t) else "")
        exact, folded = groups.setdefault(gate, ([], []))
        (exact if _case_sensitive(t) else folded).append(t)
    return tuple((frozenset(g), tuple(e), tuple(f)) for g, (e, f) in sorted(groups.items(), key=lambda kv: kv[0] == ""))


def _buckets(exact: tuple[str, ...], folded: tuple[str, ...]) -> list[tuple[str, bool, tuple[str, ...]]]:
    out: dict[tuple[str, bool], list[str]] = {}
    for triggers, cs in ((exact, True), (folded, False)):
        for t in triggers:
            out.setdefault((t[:2], cs), []).append(t)
    return [(head, cs, tuple(ts)) for (head, cs), ts in out.items()]


def _may_apply(rule: Rule, text: str, low: str) -> bool:
    if len(text) < rule.min_len:
        return False
    if rule.needs and not any(c in text for c in rule.needs):
        return False
    if rule.triggers:
        return any((t in text) if _case_sensitive(t) else (t in low) for t in rule.triggers)
    if rule.detector == "digits":
        return _card_run(text)
    if rule.detector == "b64run":
        return _b64_run40(text)
    return True


# -- configuration ----------------------------------------------------------------------------------

def literal_prefix(regex: str) -> str:
    """The literal text every match of ``regex`` starts with ('' when none can be told)."""
    import importlib

    # re's own parser (``re._parser`` since 3.11, ``sre_parse`` before)
    parser: Any = getattr(re, "_parser", None) or importlib.import_module("sre_parse")
    constants: Any = getattr(re, "_constants", None) or importlib.import_module("sre_constants")
    try:
        parsed = parser.parse(regex)
    except re.error:
        return ""
    out = []
    for op, arg in parsed:  # triggers are matched case-insensitively: (?i) changes nothing here
        if op is constants.LITERAL:
            out.append(chr(arg))
        else:
            break
    return "".join(out)


def rule_from(kind: str, regex: str, triggers: Iterable[str] | None = None) -> Rule:
    """A user rule; without ``triggers``, the regex's literal prefix (2+ chars) is its trigger, else
    it runs on every value (slower: give a trigger)."""
    re.compile(regex)  # raises re.error: reported by the caller
    kind = kind.strip().lower().replace("_", "-") or "custom"
    if triggers is None:
        prefix = literal_prefix(regex)
        triggers = (prefix,) if len(prefix) >= 2 else ()
    trig = tuple(t.lower() for t in triggers if t)
    return Rule(kind, regex, trig, min_len=max(1, min((len(t) for t in trig), default=1)))


def options_from_redact_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Policy options from a processors file's ``redact`` entry (see the module doc)."""
    rules = [rule_from(str(r.get("kind", "custom")), str(r["regex"]), r.get("triggers"))
             for r in entry.get("rules", ()) if isinstance(r, Mapping) and "regex" in r]
    rules += [rule_from("custom", str(p)) for p in entry.get("value_patterns", ())]
    return {"names": tuple(str(k) for k in entry.get("keys", ())), "rules": tuple(rules),
            "disable": frozenset(str(k) for k in entry.get("disable", ())),
            "patterns": bool(entry.get("scan_values", True))}


def _config_file_entry(path: str) -> Mapping[str, Any]:
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".json"):
        doc = json.loads(data)
    else:
        import tomllib

        doc = tomllib.loads(data.decode())
    for entry in doc.get("processors", ()) if isinstance(doc, Mapping) else ():
        if isinstance(entry, Mapping) and entry.get("name") == "redact":
            return entry
    return {}


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


def _off(value: str | None) -> bool:
    return (value or "").strip().lower() in ("0", "false", "no", "off")


def policy_from(environ: Mapping[str, str] | None = None, *, names: Sequence[str] = (),
                rules: Sequence[Rule] = (), disable: Iterable[str] = (), patterns: bool | None = None,
                errors: list[str] | None = None) -> Policy:
    """The policy of this process: the built-in one, extended by ``EXECSCOPE_REDACT_*`` (and the
    file ``EXECSCOPE_REDACT_CONFIG`` names) and by the arguments. A malformed setting is reported
    in ``errors`` (or on stderr) and left out: recording goes on with the rest of the policy."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    extra_names = list(names)
    extra_rules = list(rules)
    disabled = set(disable)
    on = True
    path = env.get(ENV_CONFIG)
    if path:
        try:
            opts = options_from_redact_entry(_config_file_entry(path))
            extra_names += opts["names"]
            extra_rules += opts["rules"]
            disabled |= opts["disable"]
            on = opts["patterns"]
        except Exception as exc:
            problems.append(f"{ENV_CONFIG}={path}: {type(exc).__name__}: {exc}")
    extra_names += _split(env.get(ENV_NAMES))
    disabled |= set(_split(env.get(ENV_DISABLE)))
    for key in sorted(env):
        if key.startswith(ENV_RULE_PREFIX) and env[key]:
            value = env[key]
            trig: tuple[str, ...] | None = None
            if "|" in value and not value.startswith("|"):
                head, _, rest = value.partition("|")
                if head and re.fullmatch(r"[^()\[\]\\*+?{}^$]+", head):
                    trig, value = _split(head), rest
            try:
                extra_rules.append(rule_from(key[len(ENV_RULE_PREFIX):], value, trig))
            except re.error as exc:
                problems.append(f"{key}: bad regex: {exc}")
    if _off(env.get(ENV_PATTERNS)):
        on = False
    if patterns is not None:
        on = patterns
    if problems:
        if errors is not None:
            errors.extend(problems)
        else:
            import sys

            for p in problems:
                sys.stderr.write(f"execscope: redaction setting ignored: {p}\n")
    return Policy(RULES + tuple(extra_rules), tuple(extra_names), on, frozenset(disabled))


POLICY: Policy = policy_from()
"""The policy of this process (from its environment); what capture and the encoders apply."""
