-- Hybrid logical clocks (instrumentation/capture/clocks.py): a span's or event's HLC is its timestamp
-- plus the offset its process's clock floor put on it (`execscope.hlc.offset`, written only where it
-- is not 0: after a message from a process whose clock is ahead), with the sequence number as its
-- logical counter. Every ordering across processes uses (Hlc, Seq), never the timestamp alone.
-- Rows without the attributes (the stock exporter's, SDK spans, older recordings) get Hlc = Timestamp.
ALTER TABLE otel_traces ADD COLUMN IF NOT EXISTS Hlc UInt64 MATERIALIZED
    toUInt64(toUnixTimestamp64Nano(Timestamp)) + toUInt64OrZero(SpanAttributes['execscope.hlc.offset']);
ALTER TABLE otel_traces ADD COLUMN IF NOT EXISTS HlcEnd UInt64 MATERIALIZED
    toUInt64(toUnixTimestamp64Nano(Timestamp)) + Duration + toUInt64OrZero(
        if(mapContains(SpanAttributes, 'execscope.hlc.end_offset'), SpanAttributes['execscope.hlc.end_offset'],
           SpanAttributes['execscope.hlc.offset']));
ALTER TABLE execscope_events ADD COLUMN IF NOT EXISTS Hlc UInt64 DEFAULT toUInt64(toUnixTimestamp64Nano(Timestamp));
-- an event's offset is its span's unless it carries its own (a receive happened inside the call)
ALTER TABLE execscope_events_mv MODIFY QUERY
SELECT
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
    ev.3 AS Attributes,
    toUInt64(toUnixTimestamp64Nano(ev.1)) + toUInt64OrZero(
        if(mapContains(ev.3, 'execscope.hlc.offset'), ev.3['execscope.hlc.offset'],
           SpanAttributes['execscope.hlc.offset'])) AS Hlc
FROM otel_traces
ARRAY JOIN arrayZip(Events.Timestamp, Events.Name, Events.Attributes) AS ev;

-- Messages one recording process received from another (span `execscope.receive`, written by the
-- receiver): the sender's physical send time and the receiver's receive time, each on its own clock.
-- ReceivedNs - SentNs = delay + (receiver clock - sender clock): the clock-skew estimates' input.
CREATE TABLE IF NOT EXISTS execscope_clock_messages (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    Receiver String CODEC(ZSTD(1)),              -- execscope.process.id of the receiving process
    ReceiverService LowCardinality(String),
    ReceiverHost LowCardinality(String),
    ReceiverPid String,
    Sender String CODEC(ZSTD(1)),                -- execscope.process.id of the sending process
    SentNs Int64,                                -- sender's physical clock at the send
    ReceivedNs Int64,                            -- receiver's physical clock at the receipt
    SentHlc UInt64,                              -- sender's HLC (l) carried by the message
    ReceivedHlc UInt64,                          -- receiver's HLC (l) after merging it
    Transport LowCardinality(String)             -- wsgi, http.response, kafka, ...
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (Receiver, Sender, Timestamp)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS execscope_clock_messages_mv
TO execscope_clock_messages
AS SELECT
    Timestamp,
    TraceId,
    ResourceAttributes['execscope.process.id'] AS Receiver,
    ServiceName AS ReceiverService,
    ResourceAttributes['host.name'] AS ReceiverHost,
    ResourceAttributes['process.pid'] AS ReceiverPid,
    SpanAttributes['execscope.clock.peer'] AS Sender,
    toInt64OrZero(SpanAttributes['execscope.clock.sent_ns']) AS SentNs,
    toInt64OrZero(SpanAttributes['execscope.clock.received_ns']) AS ReceivedNs,
    toUInt64OrZero(SpanAttributes['execscope.clock.sent_hlc']) AS SentHlc,
    toUInt64OrZero(SpanAttributes['execscope.clock.hlc']) AS ReceivedHlc,
    SpanAttributes['execscope.clock.transport'] AS Transport
FROM otel_traces
WHERE SpanName = 'execscope.receive' AND mapContains(SpanAttributes, 'execscope.clock.peer');

-- Per ordered pair of processes that talked (Sender -> Receiver): the smallest ReceivedNs - SentNs,
-- an upper bound of (receiver clock - sender clock) since a delay is never negative. With messages
-- both ways the skew lies between -min(back) and min(forth), and half their difference is the
-- NTP-style estimate (queries/clocks.py: `execscope query clock-skew`).
CREATE VIEW IF NOT EXISTS execscope_clock_pairs AS
SELECT Sender, Receiver, min(ReceivedNs - SentNs) AS MinDeltaNs, count() AS Messages,
       groupUniqArray(Transport) AS Transports, min(Timestamp) AS First, max(Timestamp) AS Last
FROM execscope_clock_messages
WHERE Sender != '' AND Receiver != '' AND Sender != Receiver
GROUP BY Sender, Receiver;
