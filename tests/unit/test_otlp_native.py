"""The C converter (``_otlp_native``) against the Python decoder, payload by payload, without the engine.

Every payload either gives exactly the Python decoder's columns, or raises ValueError (then the
sources decode it in Python); it never accepts what the Python decoder calls poison, and never
crashes or reads out of bounds on truncated, mutated or random input. The rows stored through the
engine are compared in tests/integration/test_native_block.py.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest

from execscope.collector import native_block
from execscope.collector.otlp_decode import TRACE_COLUMNS, DecodeError, decode_columns, float_str
from tests.otlp_payloads import encode_varint, requests

pytestmark = pytest.mark.skipif(not native_block.AVAILABLE, reason=native_block.REASON)


class NativeReader:
    """A reader of the Native block layout for the types the converter writes (the layout the test
    test_native_layout_is_what_the_engine_writes holds to chDB's own)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.widths: dict[int, int] = {}  # LowCardinality index width -> columns using it

    def varint(self) -> int:
        shift = value = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def string(self) -> str:
        n = self.varint()
        self.pos += n
        return self.data[self.pos - n:self.pos].decode()

    def u64s(self, n: int) -> list[int]:
        values = list(struct.unpack_from(f"<{n}Q", self.data, self.pos))
        self.pos += 8 * n
        return values

    def column(self, type_: str, n: int, prefixed: bool = False) -> list[Any]:
        """``n`` values of ``type_``; a column with LowCardinality in it starts with its prefix (UInt64 1)."""
        if "LowCardinality" in type_ and not prefixed:
            assert self.u64s(1) == [1], "LowCardinality serialization prefix"
            prefixed = True
        if type_ == "String":
            return [self.string() for _ in range(n)]
        if type_ == "LowCardinality(String)":
            return self.low_cardinality(n)
        if type_ in ("UInt64", "DateTime64(9)"):
            return self.u64s(n)
        if type_ in ("Map(String, String)", "Map(LowCardinality(String), String)"):
            ends = self.u64s(n)
            total = ends[-1] if ends else 0
            keys, values = self.column(type_[4:-9], total, prefixed), self.column("String", total)
            starts = [0, *ends[:-1]]
            assert all(len(set(keys[a:b])) == b - a for a, b in zip(starts, ends)), "a key twice in one map"
            return [dict(zip(keys[a:b], values[a:b])) for a, b in zip(starts, ends)]
        if type_.startswith("Array(") and type_.endswith(")"):
            ends = self.u64s(n)
            items = self.column(type_[6:-1], ends[-1] if ends else 0, prefixed)
            return [items[a:b] for a, b in zip([0, *ends[:-1]], ends)]
        raise AssertionError(f"type {type_} not read here")

    def low_cardinality(self, n: int) -> list[str]:
        """Flags (index width, additional keys), the dictionary ("" first), the indexes; nothing for none."""
        if n == 0:
            return []
        (flags,) = self.u64s(1)
        assert flags & ~0xFF == 0x600 and flags & 0xFF in (0, 1, 2), hex(flags)
        (n_keys,) = self.u64s(1)
        keys = [self.string() for _ in range(n_keys)]
        assert keys[0] == "" and len(set(keys)) == len(keys), "one dictionary, distinct keys, '' first"
        assert self.u64s(1) == [n]
        width = 1 << (flags & 0xFF)
        self.widths[width] = self.widths.get(width, 0) + 1
        assert n_keys <= 1 << (8 * width) and (width == 1 or n_keys > 1 << (4 * width)), "the narrowest index"
        fmt = {1: "B", 2: "H", 4: "I"}[width]
        indexes = struct.unpack_from(f"<{n}{fmt}", self.data, self.pos)
        self.pos += n * width
        return [keys[i] for i in indexes]

    def block(self) -> dict[str, list[Any]]:
        n_columns, n_rows = self.varint(), self.varint()
        out = {}
        for _ in range(n_columns):
            name, type_ = self.string(), self.string()
            out[name] = self.column(type_, n_rows)
        assert self.pos == len(self.data), "bytes left after the block"
        return out


def python_columns(payloads: list[bytes]) -> dict[str, list[Any]]:
    merged: list[list[Any]] = [[] for _ in TRACE_COLUMNS]
    for payload in payloads:
        cols, _events = decode_columns(payload)
        for acc, col in zip(merged, cols):
            acc.extend(col)
    return dict(zip(TRACE_COLUMNS, merged))


def converted_columns(payloads: list[bytes]) -> tuple[dict[str, list[Any]], int, int]:
    block, spans, events = native_block.convert(payloads)
    cols = NativeReader(block).block()
    assert list(cols) == [name for name, _type in native_block.COLUMNS]
    return cols, spans, events


def assert_same_as_python(payloads: list[bytes]) -> None:
    expected = python_columns(payloads)
    got, spans, events = converted_columns(payloads)
    for name in TRACE_COLUMNS:
        assert got[name] == expected[name], name
    assert spans == len(expected["SpanId"]) and events == sum(len(e) for e in expected["Events.Name"])
    for i, attrs in enumerate(expected["SpanAttributes"]):  # DERIVED, from the same map
        assert got["NodeId"][i] == attrs.get("execscope.node_id", "")
        assert got["Seq"][i] == to_u64_or_zero(attrs.get("execscope.seq", ""))
        offset = to_u64_or_zero(attrs.get("execscope.hlc.offset", ""))
        assert got["Hlc"][i] == (expected["Timestamp"][i] + offset) % (1 << 64)


def to_u64_or_zero(text: str) -> int:
    body = text[1:] if text.startswith("+") else text
    if not body or not body.isascii() or not body.isdigit():
        return 0
    value = int(body)
    return value if value < 1 << 64 else 0


# -- tests ------------------------------------------------------------------------------------------

def test_every_value_kind_converts_as_the_python_decoder_decodes() -> None:
    payloads = requests()
    assert_same_as_python(payloads)
    cols, spans, events = converted_columns(payloads)
    assert spans > 50 and events > 10 and any(cols["Links.TraceId"])
    rendered = {v for attrs in cols["SpanAttributes"] for v in attrs.values()}
    assert "1e21" in rendered and "0.000001" in rendered and "-0" in rendered and "nan" in rendered
    assert any(v.startswith("[") for v in rendered) and any(v.startswith("{") for v in rendered)
    assert len({*cols["ServiceName"]}) >= 3 and "" in cols["ServiceName"]


def test_dictionaries_take_one_two_and_four_byte_indexes_as_they_grow() -> None:
    """LowCardinality: the narrowest index for the dictionary (the engine's own choice, see the
    layout test in tests/integration/test_native_block.py), and the same values either way."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def request(keys_per_span: list[list[str]]) -> bytes:
        spans = [Span(trace_id=(i + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"), name=f"f{i}",
                      attributes=[KeyValue(key=k, value=AnyValue(int_value=len(k))) for k in keys])
                 for i, keys in enumerate(keys_per_span)]
        return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
                                         ).SerializeToString()

    for keys, width in (([["a", "b"], ["b", "a", "c"]], 1), ([[f"k{i}"] for i in range(255)], 1),
                        ([[f"k{i}"] for i in range(256)], 2), ([[f"k{i}" for i in range(65_536)]], 4)):
        payload = request(keys)
        assert_same_as_python([payload])
        block, _spans, _events = native_block.convert([payload])
        reader = NativeReader(block)
        reader.block()
        assert max(reader.widths) == width, (len(keys), reader.widths)


def test_fields_out_of_the_usual_order_and_repeated_messages_merge_as_protobuf_does() -> None:
    # spans before their scope, scope spans before their resource, fields of a span in reverse
    # order, a status and a scope sent twice (protobuf merges them field by field)
    def field(number: int, wire: int, body: bytes) -> bytes:
        return encode_varint(number << 3 | wire) + (encode_varint(len(body)) + body if wire == 2 else body)

    body = (field(8, 1, struct.pack("<Q", 9)) + field(7, 1, struct.pack("<Q", 5)) + field(5, 2, b"n")
            + field(2, 2, b"s" * 8) + field(1, 2, b"t" * 16))
    body += field(15, 2, field(2, 2, b"first")) + field(15, 2, field(3, 0, b"\x02"))
    scope = field(1, 2, field(1, 2, b"sc")) + field(1, 2, field(2, 2, b"v1"))
    scope_spans = field(2, 2, body) + scope
    resource = field(1, 2, field(1, 2, field(1, 2, b"service.name") + field(2, 2, field(1, 2, b"svc"))))
    payload = field(1, 2, field(2, 2, scope_spans) + resource)
    assert_same_as_python([payload])
    cols, _, _ = converted_columns([payload])
    assert (cols["ScopeName"], cols["ScopeVersion"], cols["ServiceName"]) == (["sc"], ["v1"], ["svc"])
    assert (cols["StatusCode"], cols["StatusMessage"]) == (["STATUS_CODE_ERROR"], ["first"])


def test_float_rendering_is_the_engines_for_awkward_doubles() -> None:
    rng = random.Random(3)
    doubles = [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(300)]
    doubles += [rng.uniform(-1, 1) * 10 ** rng.randrange(-30, 30) for _ in range(300)]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    span = Span(trace_id=b"t" * 16, span_id=b"s" * 8,
                attributes=[KeyValue(key=str(i), value=AnyValue(double_value=d)) for i, d in enumerate(doubles)])
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    cols, _, _ = converted_columns([request.SerializeToString()])
    assert cols["SpanAttributes"][0] == {str(i): float_str(d) for i, d in enumerate(doubles)}


def test_malformed_input_raises_value_error_and_never_what_python_calls_poison() -> None:
    """Truncations and random mutations of real payloads, and random bytes: the converter gives the
    Python decoder's columns, or raises ValueError; it never takes a payload the decoder refuses."""
    rng = random.Random(11)
    payloads = requests(seed=5)
    cases: list[bytes] = []
    for payload in payloads[:6]:
        cases += [payload[:k] for k in range(0, len(payload), max(1, len(payload) // 150))]
        for _ in range(250):
            mutant = bytearray(payload)
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(mutant))
                choice = rng.randrange(3)
                if choice == 0:
                    mutant[i] = rng.randrange(256)
                elif choice == 1:
                    del mutant[i]
                else:
                    mutant.insert(i, rng.choice([0x80, 0xFF, 0x0A, 0x12, 0x7F, rng.randrange(256)]))
            cases.append(bytes(mutant))
    cases += [rng.randbytes(rng.randrange(1, 300)) for _ in range(500)]
    cases += [b"\x0a" + b"\xff" * 12, b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x80", b"\x0b", b"\x00",
              b"\x0a\x05\x12\x03\x12"]
    outcome = {"same": 0, "refused_both": 0, "refused_c_only": 0}
    left_to_python = set()
    for case in cases:
        try:
            expected = python_columns([case])
        except DecodeError:
            expected = None
        try:
            got, _spans, _events = converted_columns([case])
        except ValueError as exc:
            assert "not taken as an OTLP" in str(exc)
            outcome["refused_both" if expected is None else "refused_c_only"] += 1
            if expected is not None:
                left_to_python.add(str(exc).split(": ")[-1])
            continue
        assert expected is not None, f"converted a payload the Python decoder refuses: {case!r}"
        for name in TRACE_COLUMNS:
            assert got[name] == expected[name], (name, case)
        outcome["same"] += 1
    assert outcome["same"] > 80 and outcome["refused_both"] > 2000, outcome
    # refused by the converter alone: only what it leaves to the Python decoder on purpose
    assert left_to_python <= {"known field with an unexpected wire type",
                              "repeated attribute value (merged by protobuf)",
                              "repeated array or kvlist value (merged by protobuf)"}, left_to_python
    assert outcome["refused_c_only"] < 20, outcome


def test_a_payload_the_converter_refuses_names_itself_and_writes_nothing(tmp_path: Any) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    good = requests()[0]
    short_id = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
        Span(trace_id=b"abc", span_id=b"s" * 8)])])]).SerializeToString()
    with pytest.raises(DecodeError, match="malformed trace or span id"):
        decode_columns(short_id)
    with pytest.raises(ValueError, match=r"payload 1: .*malformed trace or span id"):
        native_block.convert([good, short_id])
    with pytest.raises(TypeError):
        native_block.convert([good, "text"])  # type: ignore[list-item]
    path = tmp_path / "b.native"
    with pytest.raises(ValueError):
        native_block.write(path, [b"\x0a\x05\x12"])
    assert list(tmp_path.iterdir()) == []


def test_write_puts_exactly_the_converted_block_in_the_file_or_nothing(tmp_path: Any) -> None:
    """native_block.write: the converter writes the block from its own buffers (convert_into)."""
    import os

    payloads = requests(seed=5)
    path = tmp_path / "b.native"
    assert native_block.write(path, payloads) == native_block.convert(payloads)[1:]
    assert path.read_bytes() == native_block.convert(payloads)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.native"]
    with open(tmp_path / "raw", "wb") as f:  # from the descriptor's position on
        f.write(b"x")
        f.flush()
        spans, _events, size = native_block.CONVERTER.convert_into(payloads[:2], f.fileno())
    assert (tmp_path / "raw").read_bytes() == b"x" + native_block.convert(payloads[:2])[0] and size > spans > 0
    read_only = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError):
            native_block.CONVERTER.convert_into(payloads, read_only)
    finally:
        os.close(read_only)
    with pytest.raises(OSError):
        native_block.write(tmp_path / "no such dir" / "b.native", payloads)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.native", "raw"]


def test_convert_each_leaves_a_refused_payload_out_and_reports_each() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    good = requests(seed=12)
    truncated = good[1][: len(good[1]) // 2]
    block, spans, events, results = native_block.convert_each([good[0], truncated, b"", good[2], b"\xff"])
    assert (block, spans, events) == native_block.convert([good[0], b"", good[2]])
    assert isinstance(results[1], str) and "not taken as an OTLP" in results[1] and isinstance(results[4], str)
    assert results[2] == (0, ())
    for payload, result in ((good[0], results[0]), (good[2], results[3])):
        request = ExportTraceServiceRequest.FromString(payload)
        named = {ss.scope.name for rs in request.resource_spans for ss in rs.scope_spans if ss.spans}
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        assert isinstance(result, tuple) and result[0] == count and sorted(result[1]) == sorted(named)


def test_map_keys_in_changing_orders_and_past_the_hinted_places_merge_as_a_dict() -> None:
    """Map keys are interned as they are read (tried first where the key at the same place was in
    the map before) and a repeated key is found by its dictionary index: many keys, repeated, in a
    new order span after span and past the 64 places hinted, give the Python decoder's maps, keys
    in its order."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    rng = random.Random(21)
    keys = [f"key{i}" for i in range(90)] + ["execscope.seq", "execscope.node_id", "ключ", ""]
    spans = []
    for i in range(60):
        chosen = [rng.choice(keys) for _ in range(rng.choice([0, 1, 2, 30, 120]))]
        if i % 3 == 0:  # the same keys as the span before, in the same order: hinted
            chosen = [kv.key for kv in spans[-1].attributes] if spans else chosen
        values = [AnyValue(int_value=j) if j % 2 else AnyValue(string_value=f"v{j}") for j in range(len(chosen))]
        spans.append(Span(trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                          attributes=[KeyValue(key=k, value=v) for k, v in zip(chosen, values)],
                          events=[Span.Event(name="e", attributes=[KeyValue(key=k, value=AnyValue(string_value="x"))
                                                                    for k in reversed(chosen[:70])])]))
    payload = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
                                        ).SerializeToString()
    assert_same_as_python([payload, payload])
    expected = python_columns([payload])
    got, _spans, _events = converted_columns([payload])

    def ordered(maps: list[Any]) -> list[Any]:
        return [list(m.items()) if isinstance(m, dict) else [list(e.items()) for e in m] for m in maps]

    for column in ("SpanAttributes", "Events.Attributes"):
        assert ordered(got[column]) == ordered(expected[column]), column
    assert any(len(m) > 64 for m in got["SpanAttributes"]) and any(len(m) < 120 for m in got["SpanAttributes"])


def test_a_scope_between_spans_is_every_spans_and_a_replaced_key_is_checked_too() -> None:
    """The scope is read in the one pass over its spans: a scope after some of them (merged by
    protobuf wherever it is) is theirs too. A key field given twice: the first is checked for UTF-8
    like the one kept, as protobuf checks every string it reads."""
    def field(number: int, wire: int, body: bytes) -> bytes:
        return encode_varint(number << 3 | wire) + (encode_varint(len(body)) + body if wire == 2 else body)

    def span(i: int, attrs: bytes = b"") -> bytes:
        return field(2, 2, field(1, 2, bytes([i]) * 16) + field(2, 2, bytes([i]) * 8) + attrs)

    scope_spans = (span(1) + field(1, 2, field(1, 2, b"sc")) + span(2) + field(1, 2, field(2, 2, b"v2")) + span(3)
                   + field(1, 2, field(1, 2, b"last")))
    payload = field(1, 2, field(2, 2, scope_spans))
    assert_same_as_python([payload])
    cols, _, _ = converted_columns([payload])
    assert (cols["ScopeName"], cols["ScopeVersion"]) == (["last"] * 3, ["v2"] * 3)
    assert native_block.convert_each([payload])[3] == [(3, ("last",))]

    value = field(2, 2, field(1, 2, b"v"))
    for first, taken in ((b"\xff\xfe", False), (b"fine", True)):
        payload = field(1, 2, field(2, 2, span(1, field(9, 2, field(1, 2, first) + field(1, 2, b"kept") + value))))
        if taken:
            assert_same_as_python([payload])
            assert converted_columns([payload])[0]["SpanAttributes"] == [{"kept": "v"}]
        else:
            with pytest.raises(DecodeError):
                decode_columns(payload)
            with pytest.raises(ValueError, match="invalid UTF-8"):
                native_block.convert([payload])


def test_payloads_mapped_from_their_files_convert_as_their_bytes(tmp_path: Any) -> None:
    """native_block.mapped: the spool source hands the converter its files mapped, not read into
    bytes; any object with a buffer converts as its bytes do, and the maps are closed after."""
    payloads = requests(seed=5)[:4] + [b""]
    paths = []
    for i, payload in enumerate(payloads):
        paths.append(tmp_path / f"{i}.pb")
        paths[-1].write_bytes(payload)
    expected = native_block.convert(payloads)
    with native_block.mapped(paths) as mapped:
        assert [bytes(m) for m in mapped] == payloads and mapped[-1] == b""
        assert native_block.convert(mapped) == expected
        assert native_block.write(tmp_path / "b.native", mapped) == expected[1:]
        maps = mapped[:-1]
    assert all(m.closed for m in maps)  # type: ignore[union-attr]
    assert (tmp_path / "b.native").read_bytes() == expected[0]
    assert native_block.convert([memoryview(p) for p in payloads]) == expected
    assert native_block.convert_each([bytearray(p) for p in payloads])[:3] == expected
    with pytest.raises(OSError), native_block.mapped([tmp_path / "missing.pb"]):
        pass
