-- Time a call spent in recorded callees (the fast core adds each child's duration to its caller at
-- exit), so self time is Duration - ChildNs without joining spans to their children.
ALTER TABLE otel_traces ADD COLUMN IF NOT EXISTS ChildNs UInt64 MATERIALIZED toUInt64OrZero(SpanAttributes['execscope.child_ns']);
