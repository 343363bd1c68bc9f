"""Secrets stay out of the store: the corpus program (secrets_corpus.py: each kind of secret in every
position) recorded with the real `execscope run` at every level on both capture cores, through the
spool. `execscope redact-check` finds nothing and every stored column, read back, holds no secret;
recorded with value patterns off, redact-check finds the secrets in every position (it can fail),
and `execscope storage scrub` then makes the store clean on the real engine.

The same through Kafka: test_secrets_kafka.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from secrets_corpus_data import CORPUS  # noqa: E402

from execscope.instrumentation.capture.redaction import policy_from  # noqa: E402
from execscope.storage.secrets import IDENTIFIER_COLUMNS  # noqa: E402

pytestmark = pytest.mark.slow
EXECSCOPE = [sys.executable, "-m", "execscope"]
LEVELS = ("functions", "branches", "statements")
CORES = {"native": "1", "python": "0"}
NAME_ONLY = "name-only-s3cr3t"  # login()'s password: hidden by name whatever the patterns

# where each position is recorded (node ids of secrets_corpus.py); the local and the attribute
# assignment are recorded at level statements only (their events' node ids end the prefix with ':')
POSITIONS = {"argument": "secrets_corpus:take_arg", "local": "secrets_corpus:hold_local:",
             "nested dict": "secrets_corpus:nested", "object attribute": "secrets_corpus:Holder.__init__",
             "list element": "secrets_corpus:listed", "return value": "secrets_corpus:give",
             "exception message": "secrets_corpus:fail", "URL": "secrets_corpus:fetch",
             "header": "secrets_corpus:send"}
STATEMENTS_ONLY = {"local"}
KINDS = sorted({kind for _v, _r, kind in CORPUS.values()})


def cli(*args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None,
        timeout: int = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*EXECSCOPE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc


def sql(query: str, cwd: Path, store: str) -> list[dict[str, Any]]:
    return json.loads(cli("sql", query, "--store", store, "--format", "json", cwd=cwd).stdout)


def corpus_dir(tmp: Path) -> Path:
    for name in ("secrets_corpus.py", "secrets_corpus_data.py"):
        shutil.copy(HERE / name, tmp / name)
    return tmp


def run_env(core: str, patterns: bool) -> dict[str, str]:
    env = {"EXECSCOPE_NATIVE": CORES[core], "PYTHONPATH": ""}
    env["EXECSCOPE_REDACT_PATTERNS"] = "1" if patterns else "0"
    return env


def record(app: Path, store: str, core: str, level: str, patterns: bool, *extra: str) -> None:
    cli("run", "--include", "secrets_corpus", "--level", level, "--adaptive", "0",
        "--service", f"corpus-{core}-{level}", *extra, "--store", store, "--",
        sys.executable, "secrets_corpus.py", cwd=app, env=run_env(core, patterns))


def redact_check(app: Path, store: str) -> tuple[int, list[dict[str, Any]]]:
    proc = cli("redact-check", "--store", store, "--format", "json", cwd=app, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def every_stored_string(app: Path, store: str) -> Iterator[tuple[str, str, str]]:
    """(table, column, text) of every string in every column of every table, materialized ones too."""
    # aggregate states (the per-node duration digest) hold numbers, not recorded values: their binary
    # form can spell a digit run that passes the Luhn check by chance
    columns = sql("SELECT c.table AS t, c.name AS c FROM system.columns AS c INNER JOIN system.tables AS s "
                  "ON s.database = c.database AND s.name = c.table WHERE c.database = currentDatabase() "
                  "AND s.engine NOT IN ('MaterializedView', 'View') AND NOT startsWith(c.type, 'AggregateFunction') "
                  "ORDER BY c.table, c.position", app, store)
    by_table: dict[str, list[str]] = {}
    for row in columns:
        by_table.setdefault(row["t"], []).append(row["c"])
    assert {"otel_traces", "execscope_events", "cpg_nodes", "cpg_sources"} <= set(by_table)

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield str(k)
                yield from walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from walk(v)

    for table, names in by_table.items():
        select = ", ".join(f"`{n}`" for n in names)
        for row in sql(f"SELECT {select} FROM `{table}`", app, store):
            for column, value in row.items():
                for text in walk(value):
                    yield table, column, text


def assert_nothing_stored(app: Path, store: str) -> int:
    """Every stored column read back: no raw secret anywhere, nothing the policy would hide."""
    policy = policy_from({}, patterns=True)
    raws = [raw for _v, raw, _k in CORPUS.values()] + [NAME_ONLY]
    n = 0
    for table, column, text in every_stored_string(app, store):
        n += 1
        leaked = [raw for raw in raws if raw in text]
        assert not leaked, (table, column, text)
        if column not in IDENTIFIER_COLUMNS:  # hex ids: all digits and Luhn-valid by chance (1 in 180,000)
            assert policy.findings(text) == [], (table, column, text)
    return n


def assert_markers_everywhere(app: Path, store: str, services: list[str]) -> None:
    """Each kind was recorded, as its marker, in every position, by every core and level."""
    rows = sql("SELECT ServiceName AS s, NodeId AS n, toString(SpanAttributes) AS a, StatusMessage AS m, "
               "toString(Events.Attributes) AS e FROM otel_traces WHERE startsWith(NodeId, 'secrets_corpus:')",
               app, store)
    assert {r["s"] for r in rows} == set(services)
    for service in services:
        level = service.rsplit("-", 1)[1]
        for position, prefix in POSITIONS.items():
            if position in STATEMENTS_ONLY and level != "statements":
                continue
            node = prefix.rstrip(":")
            text = " ".join(r["a"] + r["m"] + r["e"] for r in rows if r["s"] == service and r["n"] == node)
            for kind in KINDS:
                assert f"<redacted:{kind}>" in text, (service, position, kind)
        login = [r for r in rows if r["s"] == service and r["n"] == "secrets_corpus:login"]
        assert login and "'execscope.arg.password':'<redacted>'" in login[0]["a"], service
        assert "password\\': <redacted>, \\'Authorization\\': <redacted>}" in login[0]["a"], service


def assert_found_in_every_position(findings: list[dict[str, Any]], levels: tuple[str, ...],
                                   other_sdk: bool = True) -> None:
    found: dict[str, set[str]] = {}
    for f in findings:
        for position, prefix in POSITIONS.items():
            if f["node"].startswith(prefix) or (not prefix.endswith(":") and f["node"] == prefix):
                found.setdefault(position, set()).add(f["kind"])
    for position in POSITIONS:
        if position in STATEMENTS_ONLY and "statements" not in levels:
            continue
        assert set(KINDS) <= found.get(position, set()), (position, sorted(set(KINDS) - found.get(position, set())))
    # the exception: its message, stack trace and the span's status
    where = {(f["table"], f["column"], f["key"]) for f in findings if f["node"] == POSITIONS["exception message"]}
    assert {("otel_traces", "StatusMessage", ""), ("otel_traces", "Events.Attributes", "exception.message"),
            ("otel_traces", "Events.Attributes", "exception.stacktrace")} <= where
    # the other SDK's span: name, attribute, status (unless a collector redacted it)
    other = {(f["column"], f["key"]) for f in findings if f["table"] == "otel_traces" and f["node"] == ""}
    if other_sdk:
        assert {("SpanName", ""), ("SpanAttributes", "http.url"), ("StatusMessage", "")} <= other
    else:
        assert not other


@pytest.fixture(scope="module")
def redacted_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    """The corpus recorded by both cores at every level, default policy, into one store."""
    app = corpus_dir(tmp_path_factory.mktemp("secrets-on"))
    store = f"chdb://{app / 'db'}"
    services = []
    for core in CORES:
        for level in LEVELS:
            record(app, store, core, level, patterns=True)
            services.append(f"corpus-{core}-{level}")
    return app, store, services


@pytest.fixture(scope="module")
def clear_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The corpus recorded with value patterns off (names are still redacted), both cores."""
    app = corpus_dir(tmp_path_factory.mktemp("secrets-off"))
    store = f"chdb://{app / 'db'}"
    for core in CORES:
        record(app, store, core, "statements", patterns=False)
    return app, store


@pytest.mark.xdist_group("secrets-on")
def test_redact_check_finds_nothing_in_a_recording_of_every_secret(redacted_store) -> None:
    app, store, services = redacted_store
    code, findings = redact_check(app, store)
    assert (code, findings) == (0, [])
    assert_markers_everywhere(app, store, services)


@pytest.mark.xdist_group("secrets-on")
def test_every_stored_column_read_back_holds_no_secret(redacted_store) -> None:
    app, store, _services = redacted_store
    assert assert_nothing_stored(app, store) > 10_000  # strings read: spans, events, CPG rows, sources


@pytest.mark.xdist_group("secrets-off")
def test_with_patterns_off_redact_check_finds_every_position_and_scrub_cleans_it(clear_store) -> None:
    app, store = clear_store
    code, findings = redact_check(app, store)
    assert code == 1
    assert_found_in_every_position(findings, ("statements",))
    assert not any(f["kind"] == "secret-name" for f in findings)  # names were redacted all the same
    # then the store scrubbed in place, on the real engine
    scrubbed = store
    before = sql("SELECT count() AS n FROM otel_traces", app, scrubbed)[0]["n"]
    events = sql("SELECT count() AS n FROM execscope_events", app, scrubbed)[0]["n"]
    dry = json.loads(cli("storage", "scrub", "--dry-run", "--store", scrubbed, "--format", "json", cwd=app).stdout)
    assert redact_check(app, scrubbed)[0] == 1 and dry
    report = json.loads(cli("storage", "scrub", "--store", scrubbed, "--format", "json", cwd=app).stdout)
    actions = {(r["table"], r["column"], r["action"]) for r in report}
    assert {("otel_traces", "SpanAttributes", "updated"), ("otel_traces", "Events.Attributes", "updated"),
            ("execscope_events", "VarValue", "updated"), ("otel_traces", "*", "reinserted")} <= actions
    assert not [r for r in report if r["action"] == "left"]
    assert redact_check(app, scrubbed) == (0, [])
    assert_nothing_stored(app, scrubbed)
    # nothing lost, nothing doubled: every span and event is still there once
    assert sql("SELECT count() AS n, uniqExact(SpanId) AS u FROM otel_traces", app, scrubbed)[0] == \
        {"n": before, "u": before}
    assert sql("SELECT count() AS n FROM execscope_events", app, scrubbed)[0]["n"] == events


@pytest.mark.xdist_group("secrets-off")
def test_a_secret_written_in_the_source_is_found_in_the_cpg_and_scrubbed_keeping_lines(tmp_path: Path) -> None:
    # the values recorded are redacted at capture; the CPG keeps the source text, key and all
    key = "AKIA" + "Q5TESTKEY7EXAMPLE"[:16]
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    source = (f"KEY = {key!r}\nPEM = '''{pem}'''\n\n\ndef use(k):\n    return len(k)\n\n\nuse(KEY)\nuse(PEM)\n")
    (tmp_path / "hardcoded.py").write_text(source)
    store = f"chdb://{tmp_path / 'db'}"
    cli("run", "--include", "hardcoded", "--level", "statements", "--store", store, "--",
        sys.executable, "hardcoded.py", cwd=tmp_path)
    values = sql("SELECT SpanAttributes['execscope.arg.k'] AS v FROM otel_traces WHERE SpanName = 'hardcoded.use'",
                 tmp_path, store)
    assert sorted(v["v"] for v in values) == ["'<redacted:aws-key>'", "'<redacted:private-key>'"]
    code, findings = redact_check(tmp_path, store)
    assert code == 1 and {(f["table"], f["column"], f["kind"]) for f in findings} >= {
        ("cpg_sources", "source", "aws-key"), ("cpg_sources", "source", "private-key"),
        ("cpg_nodes", "code", "aws-key")}
    report = json.loads(cli("storage", "scrub", "--store", store, "--format", "json", cwd=tmp_path).stdout)
    assert {(r["table"], r["column"]) for r in report} >= {("cpg_sources", "source"), ("cpg_nodes", "code")}
    assert redact_check(tmp_path, store) == (0, [])
    stored = sql("SELECT source FROM cpg_sources", tmp_path, store)[0]["source"]
    assert key not in stored and "MIIEvQ" not in stored
    assert stored.count("\n") == source.count("\n")  # lines keep their numbers (the cinema shows them)
    assert stored.splitlines()[4:] == source.splitlines()[4:]


def test_identifier_columns_are_not_reported_as_secrets(tmp_path: Path) -> None:
    # a hex span id with no letter a-f that passes the Luhn check (one id in ~180,000) is an id, not a
    # card number; the same digits in a recorded value are one
    from execscope.storage.secrets import check_store
    from execscope.storage.store import open_store

    digits = "3011287076540826"
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        store.command(
            "INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, ServiceName, "
            "SpanAttributes) VALUES (now64(9), {t:String}, {s:String}, {s:String}, 'f', 'svc', "
            "map('execscope.arg.n', {v:String}))",
            parameters={"t": "1" + digits + digits[1:], "s": digits, "v": repr(digits)})
        findings = check_store(store, policy_from({}, patterns=True))
    assert [(f.table, f.column, f.kind) for f in findings] == [("otel_traces", "SpanAttributes", "card-number")]
