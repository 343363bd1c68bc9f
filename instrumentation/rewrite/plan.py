"""Instrumentation plans: per function, how finely to record it and what fraction of its calls.

A plan is a TOML file (written by ``execscope plan``, or by hand)::

    include = ["myapp", "myapp.*"]        # optional: modules to rewrite (else --include)
    exclude = []                          # optional

    [default]                             # every function no rule names
    level = "functions"                   # off | functions | branches | statements
    rate = 1.0                            # fraction of calls recorded, 0..1

    [[rule]]
    match = "myapp.core.parse*"           # glob over "module.qualname", or over the module name
    level = "statements"
    rate = 0.25

    [[rule]]
    match = "myapp.util:helper"           # a node ID (contains ':'): exactly that function
    level = "off"

A function's setting is that of the rule naming its node ID, else of the first rule (in file order)
whose glob matches its qualified name ``module.qualname`` or its module, else the default. A module
body (import-time code) follows the rules that match its module name. ``off`` leaves a function as
written (no span); a rate below 1 records that fraction of its calls, chosen deterministically (an
accumulator per function: exactly ``floor(calls * rate)`` or one more are recorded); a call left out
runs as written and what it calls is recorded under its nearest recorded caller.

Errors: :func:`load_plan` / :func:`parse_plan` raise :class:`PlanError`, one message naming the file,
the entry and what is wrong; nothing is applied from a plan that has an error.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEVEL_NAMES = ("off", "functions", "branches", "statements")
OFF, FUNCTIONS, BRANCHES, STATEMENTS = 0, 1, 2, 3  # same numbers as capture.runtime's levels
LEVEL_OF = {name: i for i, name in enumerate(LEVEL_NAMES)}


class PlanError(ValueError):
    """A plan file that cannot be applied; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Setting:
    """How one function is recorded."""

    level: int = FUNCTIONS  # OFF..STATEMENTS
    rate: float = 1.0       # fraction of calls recorded

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]

    @property
    def records(self) -> bool:
        """Does a function with this setting record any call (a level above off, a rate above 0)?"""
        return self.level != OFF and self.rate > 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    match: str
    setting: Setting

    @property
    def is_node_id(self) -> bool:
        return ":" in self.match

    def may_apply_to(self, module: str) -> bool:
        """Could this rule name ``module``'s body or some function of it? A node ID names its module;
        a glob, when it matches the module's name, or (conservatively) when its text before the first
        wildcard and ``module.`` agree as far as both go."""
        if self.is_node_id:
            return self.match.split(":", 1)[0] == module
        if fnmatch.fnmatchcase(module, self.match):
            return True
        stem = module + "."
        cut = next((i for i, ch in enumerate(self.match) if ch in "*?["), None)
        if cut is None:
            return self.match.startswith(stem)
        return self.match[:cut].startswith(stem) or stem.startswith(self.match[:cut])


@dataclass(frozen=True)
class Plan:
    """A parsed plan; immutable. :meth:`setting_for` is the one lookup the rewriter makes."""

    default: Setting = Setting()
    rules: tuple[Rule, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _by_node: Mapping[str, Setting] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_node", {r.match: r.setting for r in self.rules if r.is_node_id})

    def setting_for(self, module: str, qualname: str = "", node_id: str = "") -> Setting:
        """The setting of function ``module.qualname`` (node ``node_id``); of the module body when
        ``qualname`` is empty."""
        if node_id:
            found = self._by_node.get(node_id)
            if found is not None:
                return found
        full = f"{module}.{qualname}" if qualname else module
        for rule in self.rules:
            if not rule.is_node_id and (fnmatch.fnmatchcase(full, rule.match)
                                        or fnmatch.fnmatchcase(module, rule.match)):
                return rule.setting
        return self.default

    def may_record(self, module: str) -> bool:
        """False when no function of ``module`` and not its body can be recorded under this plan: the
        default and every rule that could apply to it are ``off`` (or rate 0). The import hook then
        leaves the module as written, unparsed (see :meth:`Rule.may_apply_to`)."""
        return self.default.records or any(r.setting.records and r.may_apply_to(module) for r in self.rules)

    def max_level(self) -> int:
        return max([self.default.level, *(r.setting.level for r in self.rules)])

    def digest(self) -> str:
        """Identifies what the plan does to code (rewrite caches are keyed by it)."""
        text = json.dumps([[self.default.level, self.default.rate],
                           [[r.match, r.setting.level, r.setting.rate] for r in self.rules]])
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _setting(table: Any, where: str, base: Setting | None = None) -> Setting:
    if not isinstance(table, dict):
        raise PlanError(f"{where}: expected a table, got {type(table).__name__}")
    unknown = set(table) - {"level", "rate", "match"}
    if unknown:
        raise PlanError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: level, rate, match)")
    base = base or Setting()
    level = base.level
    if "level" in table:
        name = table["level"]
        if name not in LEVEL_OF:
            raise PlanError(f"{where}: level must be one of {', '.join(LEVEL_NAMES)}, got {name!r}")
        level = LEVEL_OF[name]
    rate = base.rate
    if "rate" in table:
        raw = table["rate"]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0.0 <= float(raw) <= 1.0:
            raise PlanError(f"{where}: rate must be a number within 0..1, got {raw!r}")
        rate = float(raw)
    return Setting(level, rate)


def _globs(doc: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PlanError(f"{source}: {key} must be a list of module globs")
    return tuple(value)


def parse_plan(text: str, source: str = "<plan>") -> Plan:
    """Parse and validate a plan; raises :class:`PlanError`."""
    if sys.version_info >= (3, 11):  # imported here: every recording process loads this module
        import tomllib
    else:  # pragma: no cover - the same parser, before it joined the standard library
        import tomli as tomllib
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"default", "rule", "include", "exclude", "predicted"}
    if unknown:
        raise PlanError(f"{source}: unknown key(s) {sorted(unknown)} (allowed: include, exclude, default, rule)")
    default = _setting(doc.get("default", {}), f"{source}: [default]")
    rules_doc = doc.get("rule", [])
    if not isinstance(rules_doc, list):
        raise PlanError(f"{source}: rule must be an array of tables ([[rule]])")
    rules = []
    for i, entry in enumerate(rules_doc, 1):
        where = f"{source}: rule {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), str) or not entry["match"]:
            raise PlanError(f"{where}: needs match = \"GLOB or NODE_ID\"")
        rules.append(Rule(entry["match"], _setting(entry, where, default)))
    return Plan(default=default, rules=tuple(rules), include=_globs(doc, "include", source),
                exclude=_globs(doc, "exclude", source))


def load_plan(path: str | Path) -> Plan:
    """Read and validate the plan file at ``path``; raises :class:`PlanError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"plan file {path}: cannot be read: {exc}") from None
    return parse_plan(text, f"plan file {path}")


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string (ASCII escapes)


def dump_plan(plan: Plan, comments: Sequence[str] = (), predicted: Mapping[str, float] | None = None) -> str:
    """TOML text of ``plan`` (read back by :func:`parse_plan` to an equal plan). Hand-written: the
    format is four flat keys and an array of tables, not worth a dependency (tomllib only reads)."""
    lines = [f"# {c}" for c in comments]
    if plan.include:
        lines.append(f"include = [{', '.join(_toml_str(g) for g in plan.include)}]")
    if plan.exclude:
        lines.append(f"exclude = [{', '.join(_toml_str(g) for g in plan.exclude)}]")
    lines += ["", "[default]", f"level = {_toml_str(plan.default.level_name)}", f"rate = {plan.default.rate!r}"]
    if predicted:
        lines += ["", "[predicted]", *(f"{k} = {float(v)!r}" for k, v in predicted.items())]
    for rule in plan.rules:
        lines += ["", "[[rule]]", f"match = {_toml_str(rule.match)}",
                  f"level = {_toml_str(rule.setting.level_name)}", f"rate = {rule.setting.rate!r}"]
    return "\n".join(lines) + "\n"
