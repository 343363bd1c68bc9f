-- Span events flattened one row per event (statement executed, branch taken, value assigned,
-- yield/resume, exception), ordered within a trace by execscope.seq. Filled by a materialized view
-- on every insert into otel_traces, including the stock collector exporter's.
CREATE TABLE IF NOT EXISTS execscope_events (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    EventName LowCardinality(String) CODEC(ZSTD(1)),
    NodeId String CODEC(ZSTD(1)),            -- execscope.node_id of the event ('' for foreign events)
    Seq UInt64 CODEC(Delta, ZSTD(1)),        -- execscope.seq: order within the trace
    LineNumber UInt32 CODEC(ZSTD(1)),        -- code.line.number when the event has one
    VarName String CODEC(ZSTD(1)),           -- execscope.var.name of assignments
    VarValue String CODEC(ZSTD(1)),          -- execscope.var.value (bounded, redacted)
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    INDEX idx_node_id NodeId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (TraceId, Seq, Timestamp)
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS execscope_events_mv
TO execscope_events
AS SELECT
    ev.1 AS Timestamp,
    TraceId,
    SpanId,
    ServiceName,
    SpanName,
    ev.2 AS EventName,
    ev.3['execscope.node_id'] AS NodeId,
    toUInt64OrZero(ev.3['execscope.seq']) AS Seq,
    toUInt32OrZero(ev.3['code.line.number']) AS LineNumber,
    ev.3['execscope.var.name'] AS VarName,
    ev.3['execscope.var.value'] AS VarValue,
    ev.3 AS Attributes
FROM otel_traces
ARRAY JOIN arrayZip(Events.Timestamp, Events.Name, Events.Attributes) AS ev;
