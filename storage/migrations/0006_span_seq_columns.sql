-- Sequence numbers of calls as materialized columns (filled on insert, also for rows written by the
-- stock collector exporter): the cinema indexes a trace's calls without reading the attribute map.
ALTER TABLE otel_traces ADD COLUMN IF NOT EXISTS Seq UInt64 MATERIALIZED toUInt64OrZero(SpanAttributes['execscope.seq']);
ALTER TABLE otel_traces ADD COLUMN IF NOT EXISTS SeqEnd UInt64 MATERIALIZED toUInt64OrZero(SpanAttributes['execscope.seq.end']);
