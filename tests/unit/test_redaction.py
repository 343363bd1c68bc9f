"""Secrets stay out of what is recorded: by name inside values at every depth, by value pattern in
every place a value is written, with the same text from both renderers and both capture cores.

Runs on the native core here and on the pure-Python core through
test_native_capture.test_the_pure_python_core_passes_the_same_capture_tests."""

from __future__ import annotations

import collections
import json
import random
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from execscope.collector.otlp_decode import any_value_to_str
from execscope.instrumentation.capture import fast_capture, redaction, runtime, values
from execscope.instrumentation.capture.redaction import REDACTED, Policy, card_number_ok, luhn_ok, policy_from
from execscope.instrumentation.capture.values import capture, exception_message, python_repr, safe_repr
from execscope.instrumentation.export.otlp_encode import encode_request, redact_sdk_request
from tests.conftest import load_rewritten

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from secrets_corpus_data import CORPUS  # noqa: E402

NATIVE = values._native_repr is not None

# Look-alikes that must stay as they are.
CLEAN = [
    "hello world", "ValueError: bad input", "https://example.com/path?q=1", "2024-01-15 12:30:45.123456",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",      # a git sha: 40 hex chars, no upper case
    "1733390000000000000", "1733390000000000",         # ns / us timestamps
    "+44 7911 123456", "555-0100", "Basic information about accounts", "passed", "token = compute()",
    "the password: expected str", "550e8400-e29b-41d4-a716-446655440000", "ask-me-anything-123456789012",
    "4111 1111 1111 1112",                             # fails the Luhn check
    "4772038900387e43", "span 4111111111111111ab",     # digit runs inside hex ids and words
    "/usr/lib/python3.11/site-packages/opentelemetry/sdk/trace/__init__.py",
    "SELECT * FROM users WHERE id = 42", "authorization granted", "sk-short",
]


@pytest.fixture
def native_policy() -> Iterator[Policy]:
    """The process's default policy, restored after the test."""
    previous = values.policy()
    yield previous
    values.use_policy(previous)


def test_each_kind_is_found_and_hidden_with_its_kind() -> None:
    policy = policy_from({})
    for label, (value, raw, kind) in CORPUS.items():
        red = policy.redact_text(value)
        assert raw not in red and f"<redacted:{kind}>" in red, (label, red)
        assert kind in policy.findings(value), label
        assert policy.findings(red) == [] and policy.redact_text(red) == red, label  # idempotent


def test_look_alikes_stay() -> None:
    policy = policy_from({})
    for text in CLEAN:
        assert policy.redact_text(text) == text, text
        assert policy.findings(text) == [], text


def test_card_numbers_need_an_issuer_and_the_luhn_check() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert card_number_ok("4111 1111 1111 1111") and card_number_ok("5555-5555-5555-4444")
    assert card_number_ok("378282246310005") and card_number_ok("6011111111111117")
    assert not card_number_ok("1234567812345670")  # passes Luhn, no issuer starts with 1


def test_connection_strings_urls_and_headers_keep_their_shape() -> None:
    policy = policy_from({})
    assert policy.redact_text("postgres://admin:S3cretPass@db/app") == "postgres://admin:<redacted:password>@db/app"
    assert policy.redact_text("redis://:pw@cache:6379/0") == "redis://:<redacted:password>@cache:6379/0"
    assert (policy.redact_text("Server=db;User Id=u;Password=p4ss;Encrypt=1")
            == "Server=db;User Id=u;Password=<redacted:password>;Encrypt=1")
    assert policy.redact_text('{"password": "hunter2"}') == '{"password": "<redacted:password>"}'
    assert policy.redact_text("GET /cb?code=1&access_token=abc123") == "GET /cb?code=1&access_token=<redacted:secret>"
    assert policy.redact_text("Authorization: Bearer abcdefgh12345") == "Authorization: Bearer <redacted:bearer>"
    assert policy.redact_text("Authorization: token abcdef123456") == "Authorization: <redacted:authorization>"


def test_names_inside_values_at_every_depth() -> None:
    value = {"user": "bob", "password": "hunter2", "nested": {"deeper": {"api_key": "k"}, "Authorization": "x"}}
    text = safe_repr(value)
    assert "hunter2" not in text and "'k'" not in text and "'x'" not in text
    assert text == ("{'user': 'bob', 'password': <redacted>, 'nested': {'deeper': {'api_key': <redacted>}, "
                    "'Authorization': <redacted>}}")
    assert safe_repr([("Authorization", "Bearer t"), ("Accept", "*/*")]) == \
        "[('Authorization', <redacted>), ('Accept', '*/*')]"
    creds = collections.namedtuple("Creds", "user password")("bob", "hunter2")
    assert safe_repr(creds) == "Creds(user='bob', password=<redacted>)"
    assert safe_repr(types.SimpleNamespace(host="h", token="t")) == "namespace(host='h', token=<redacted>)"
    assert capture("db_password", "x") == REDACTED and capture("user", "x") == "'x'"
    assert safe_repr({"kwargs": {"session_id": 1}}) == "{'kwargs': {'session_id': <redacted>}}"


def test_value_patterns_inside_values_and_at_the_cut() -> None:
    aws = CORPUS["aws-key"][0]
    assert safe_repr(["a", {"k": [aws]}]) == "['a', {'k': ['<redacted:aws-key>']}]"
    assert safe_repr(aws.encode()) == "b'<redacted:aws-key>'"
    assert safe_repr(4111111111111111) == "<redacted:card-number>" and safe_repr(1733390000000000000) == \
        "1733390000000000000"
    # a key straddling the cut is recognised whole; only its marker's head is stored
    text = safe_repr("x" * 250 + aws)
    assert "AKIA" not in text and text.startswith("'" + "x" * 250 + "<red")
    pem = CORPUS["private-key"][0]
    assert "MIIE" not in safe_repr("x" * 200 + pem + "y" * 1000)  # its END beyond the cut


@pytest.mark.parametrize("value", [
    {"password": "a", "x": [CORPUS["jwt"][0], CORPUS["card-number"][0]]},
    ("Cookie", "c=1"), ("ok", "fine"), [("Set-Cookie", "x"), 1, None],
    CORPUS["url-password"][0], CORPUS["private-key"][0], "é" * 40 + CORPUS["github-token"][0],
    "\U0001F600" + CORPUS["slack-token"][0], bytearray(CORPUS["dsn-password"][0].encode()),
    {"k": {"l": {"m": {"n": "deep"}}}}, [CORPUS["aws-secret"][0]] * 20, 12345678901234567890,
    "x" * 600, "pwd=abc", frozenset({"Bearer abcdefghijkl"}), collections.deque(["sk_live_" + "a" * 24]),
])
def test_both_renderers_write_the_same_text(value: object) -> None:
    assert safe_repr(value) == python_repr(value)
    for raw in (v[1] for v in CORPUS.values()):
        assert raw not in safe_repr(value)


def _random_texts(n: int) -> Iterator[str]:
    rng = random.Random(20)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_=:/@.+'\"\néλ"
    secrets = [v[0] for v in CORPUS.values()]
    yield from ["1 4111 1111 1111 1111", "12-4111111111111111", "7 1 4111-1111-1111-1111 x", "ts=1733390000000000000",
                "url https://u:p@h/x", "https://example.com/a@b", "Bearer\tabcdefghijkl", "token:'abc'"]
    for i in range(n):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 120)))
        if i % 3 == 0:
            at = rng.randrange(0, len(text) + 1)
            text = text[:at] + rng.choice(secrets) + text[at:]
        yield text


def test_the_scan_never_misses_what_the_rules_would_hide() -> None:
    policy = values.policy()
    python = Policy(policy.rules, policy.extra_names, policy.patterns, policy.disabled)  # its Python scan
    for text in _random_texts(3000):
        changed = python._apply(text) != text
        if changed:
            assert python._python_scan(text), text
            assert policy.scan(text), text  # the C scan when the native core is loaded
        assert python.redact_text(text) == policy.redact_text(text)


def test_exception_messages_and_stack_traces(tmp_path: Path) -> None:
    url = CORPUS["url-password"][0]
    assert exception_message(ConnectionError(f"cannot reach {url}")) == \
        "cannot reach postgres://admin:<redacted:password>@db.internal:5432/app"

    class Custom(Exception):
        def __str__(self) -> str:
            return "never called"

    assert "S3cretPass9" not in exception_message(Custom(url))
    source = tmp_path / "leaky.py"
    source.write_text("def f():\n    raise ValueError('k=' + '" + CORPUS["stripe-key"][0] + "')\n")
    stack = runtime.format_stack(((str(source), 2, "f"),), "ValueError", "k")
    assert "4eC39HqLyj" not in stack and "<redacted:stripe-key>" in stack


def test_stack_traces_are_formatted_once_per_path_and_policy(tmp_path: Path) -> None:
    source = tmp_path / "leaky2.py"
    key = CORPUS["stripe-key"][0]
    source.write_text("def f():\n    g()\ndef g():\n    raise ValueError('k=' + '" + key + "')\n")
    entries = ((str(source), 2, "f"), (str(source), 4, "g"))
    first = runtime.format_stack(entries, "ValueError", "k")
    assert entries in runtime._stacks  # formatted once: the same path again is a lookup
    assert first.startswith("Traceback (most recent call last):\n") and first.endswith("\nValueError: k")
    assert 'line 2, in f\n    g()\n' in first and "<redacted:stripe-key>" in first and key not in first
    again = runtime.format_stack(entries, "KeyError", f"other {CORPUS['aws-key'][0]}")  # same path
    assert again.startswith(first[: -len("ValueError: k")]) and again.endswith("KeyError: other <redacted:aws-key>")
    previous = values.use_policy(policy_from({"EXECSCOPE_REDACT_PATTERNS": "0"}))  # a new policy: formatted anew
    try:
        assert key in runtime.format_stack(entries, "ValueError", "k")
    finally:
        values.use_policy(previous)
    assert runtime.format_stack(entries, "ValueError", "k") == first


def test_the_last_line_of_a_stack_trace_is_redacted_once_per_text_and_policy(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # an exception passing through many recorded calls gives each the same "type: message" line
    calls: list[str] = []
    real = runtime.redact_text
    monkeypatch.setattr(runtime, "redact_text", lambda text: calls.append(text) or real(text))
    entries = ((str(tmp_path / "absent.py"), 1, "f"),)
    secret = f"found {CORPUS['aws-key'][0]}"
    stacks = [runtime.format_stack(entries, "pkg.ParseError", secret) for _ in range(5)]
    assert len(set(stacks)) == 1 and stacks[0].endswith("pkg.ParseError: found <redacted:aws-key>")
    assert calls.count(f"pkg.ParseError: {secret}") == 1
    runtime.format_stack(entries, "pkg.ParseError", "another message")
    assert calls.count("pkg.ParseError: another message") == 1
    previous = values.use_policy(policy_from({"EXECSCOPE_REDACT_PATTERNS": "0"}))  # a new policy: redacted anew
    try:
        assert runtime.format_stack(entries, "pkg.ParseError", secret).endswith(f"pkg.ParseError: {secret}")
    finally:
        values.use_policy(previous)
    assert runtime.format_stack(entries, "pkg.ParseError", secret) == stacks[0]


def test_the_policy_is_data_extended_by_the_environment(tmp_path: Path) -> None:
    env = {"EXECSCOPE_REDACT_NAMES": "ssn, member_no", "EXECSCOPE_REDACT_DISABLE": "card-number",
           "EXECSCOPE_REDACT_RULE_ACME_TOKEN": "acme_[0-9a-f]{8}",
           "EXECSCOPE_REDACT_RULE_INTERNAL": "int-,itk|it[k-][0-9]{6}"}
    policy = policy_from(env)
    assert policy.is_secret_name("customer_ssn") and policy.is_secret_name("MEMBER_NO")
    assert policy.redact_text("4111 1111 1111 1111") == "4111 1111 1111 1111"
    assert policy.redact_text("id acme_deadbeef") == "id <redacted:acme-token>"
    assert policy.redact_text("x itk123456") == "x <redacted:internal>"
    assert "acme_" in policy.triggers and "itk" in policy.triggers
    off = policy_from({"EXECSCOPE_REDACT_PATTERNS": "0"})
    assert off.redact_text(CORPUS["aws-key"][0]) == CORPUS["aws-key"][0] and off.is_secret_name("password")
    errors: list[str] = []
    policy_from({"EXECSCOPE_REDACT_RULE_BAD": "(unclosed"}, errors=errors)
    assert errors and "bad regex" in errors[0]
    config = tmp_path / "chain.json"
    config.write_text(json.dumps({"processors": [{"name": "redact", "keys": ["pin"], "disable": ["jwt"],
                                                  "rules": [{"kind": "zz", "regex": "zz[0-9]{4}"}]}]}))
    policy = policy_from({"EXECSCOPE_REDACT_CONFIG": str(config)})
    assert policy.is_secret_name("card_pin") and policy.redact_text("a zz1234") == "a <redacted:zz>"
    assert policy.redact_text(CORPUS["jwt"][0]) == CORPUS["jwt"][0]


def test_switching_the_policy_reaches_the_c_renderer(native_policy: Policy) -> None:
    aws = CORPUS["aws-key"][0]
    values.use_policy(policy_from({}, patterns=False))
    assert safe_repr([aws]) == python_repr([aws]) == f"['{aws}']"
    assert safe_repr({"password": aws}) == "{'password': <redacted>}"  # names stay on
    values.use_policy(policy_from({}, names=["colour"]))
    assert safe_repr({"colour": "red", "k": aws}) == "{'colour': <redacted>, 'k': '<redacted:aws-key>'}"


@pytest.fixture
def fast() -> Iterator[None]:
    fast_capture.take_pending()
    fast_capture.activate()
    try:
        yield
    finally:
        runtime.deactivate()
        fast_capture.take_pending()


APP = '''
from secrets_corpus_data import VALUES

class Holder:
    def __init__(self, value):
        self.value = value

def give(label):
    return VALUES[label]

def fail(label):
    raise ValueError("refused " + VALUES[label])

def run(label):
    value = VALUES[label]
    config = {"service": {"endpoint": [value]}, "password": "hunter2"}
    Holder(value)
    give(label)
    try:
        fail(label)
    except ValueError:
        pass
    return len(config)
'''


def _strings(request: ExportTraceServiceRequest) -> Iterator[str]:
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield span.name
                yield span.status.message
                for kv in span.attributes:
                    yield any_value_to_str(kv.value)
                for event in span.events:
                    for kv in event.attributes:
                        yield any_value_to_str(kv.value)


def test_recorded_and_encoded_by_the_fast_core_nothing_leaks(fast) -> None:
    module = load_rewritten(APP, "statements", name="leaky_app", file="/src/leaky_app.py")
    for label in CORPUS:
        module.run(label)
    frames, _ = fast_capture.take_pending()
    request = ExportTraceServiceRequest()
    request.ParseFromString(encode_request(frames, {"service.name": "svc", "deploy.token": "t"}, "1"))
    texts = list(_strings(request))
    assert request.resource_spans[0].resource.attributes[1].value.string_value == REDACTED
    for label, (_value, raw, kind) in CORPUS.items():
        assert not any(raw in t for t in texts), label
        assert any(f"<redacted:{kind}>" in t for t in texts), label
    assert not any("hunter2" in t for t in texts)


def test_sdk_spans_exported_next_to_ours_are_redacted() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    url = CORPUS["url-password"][0]
    with provider.get_tracer("requests").start_as_current_span("GET " + url, attributes={
            "http.url": url, "http.request.header.authorization": "Bearer x", "tags": ["a", CORPUS["jwt"][0]]}) as span:
        span.add_event("log", {"message": "using " + CORPUS["aws-key"][0]})
        span.set_status(runtime.Status(runtime.StatusCode.ERROR, "failed for " + url))
    with provider.get_tracer("execscope").start_as_current_span("ours", attributes={"kept": url}):
        pass
    request = redact_sdk_request(encode_spans(exporter.get_finished_spans()))
    leaked = [t for t in _strings(request) if any(raw in t for _v, raw, _k in CORPUS.values())]
    assert leaked == [url]  # only the trusted scope's own attribute
    spans = {s.name: s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}
    assert "ours" in spans and any_value_to_str(spans["ours"].attributes[0].value) == url  # trusted: left alone
    foreign = next(s for n, s in spans.items() if n != "ours")
    assert foreign.name == "GET postgres://admin:<redacted:password>@db.internal:5432/app"
    attrs = {kv.key: kv.value for kv in foreign.attributes}
    assert attrs["http.request.header.authorization"].string_value == REDACTED
    assert attrs["tags"].array_value.values[1].string_value == "<redacted:jwt>"
    assert "<redacted:aws-key>" in foreign.events[0].attributes[0].value.string_value
    assert "<redacted:password>" in foreign.status.message


def test_the_collector_redacts_other_sdks_spans_and_trusts_ours() -> None:
    from execscope.collector.otlp_decode import TRACE_COLUMNS
    from execscope.collector.processors import RedactProcessor, SpanBatch, build_chain

    def batch(scope: str) -> SpanBatch:
        row = {name: [] for name in TRACE_COLUMNS}
        row.update({"SpanName": ["GET " + CORPUS["url-password"][0]], "ScopeName": [scope],
                    "StatusMessage": ["x " + CORPUS["card-number"][0]],
                    "SpanAttributes": [{"db.password": "p", "q": CORPUS["openai-key"][0],
                                        "execscope.var.name": "token", "execscope.var.value": "'t'"}],
                    "ResourceAttributes": [{"service.name": "s", "api.token": "t"}],
                    "Events.Attributes": [[{"msg": CORPUS["bearer"][0]}]], "Links.Attributes": [[]]})
        return SpanBatch([row[name] if row[name] else [None] for name in TRACE_COLUMNS])

    out = RedactProcessor().process(batch("opentelemetry.instrumentation.requests"))
    assert out.column("SpanName")[0] == "GET postgres://admin:<redacted:password>@db.internal:5432/app"
    assert out.column("StatusMessage")[0] == "x <redacted:card-number>"
    assert out.column("SpanAttributes")[0] == {"db.password": REDACTED, "q": "<redacted:openai-key>",
                                               "execscope.var.name": "token", "execscope.var.value": REDACTED}
    assert out.column("ResourceAttributes")[0] == {"service.name": "s", "api.token": REDACTED}
    assert out.column("Events.Attributes")[0] == [{"msg": "Bearer <redacted:bearer>"}]
    chain = build_chain({}, default_redact=True)
    assert [p.name for p in chain.processors] == ["redact"] and not chain.native_ok
    assert chain.native_ok_for({"execscope"}) and not chain.native_ok_for({"execscope", "other"})
    kept = chain.process(batch("execscope"))
    assert kept.column("SpanAttributes")[0]["q"] == CORPUS["openai-key"][0]  # trusted: captured redacted
    assert not build_chain({"processors": [{"name": "redact"}]}, default_redact=True).native_ok_for({"execscope"})
    assert redaction.is_marker("<redacted:jwt>") and redaction.is_marker("[REDACTED]")
