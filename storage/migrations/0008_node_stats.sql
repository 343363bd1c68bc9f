-- Per function (node), per day and service: executions, total time, time in recorded callees and a
-- p95 digest, kept up to date by a materialized view on every insert into otel_traces (also the stock
-- collector exporter's). `execscope query hot-nodes` reads this small table instead of every span.
CREATE TABLE IF NOT EXISTS execscope_node_stats (
    Day Date,
    ServiceName LowCardinality(String),
    NodeId String,
    CodeVersion LowCardinality(String),
    executions SimpleAggregateFunction(sum, UInt64),
    total_ns SimpleAggregateFunction(sum, UInt64),
    child_ns SimpleAggregateFunction(sum, UInt64),
    duration_digest AggregateFunction(quantileTDigest(0.95), UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(Day)
ORDER BY (ServiceName, NodeId, CodeVersion, Day)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS execscope_node_stats_mv
TO execscope_node_stats
AS SELECT
    toDate(Timestamp) AS Day,
    ServiceName,
    NodeId,
    CodeVersion,
    toUInt64(count()) AS executions,
    toUInt64(sum(Duration)) AS total_ns,
    toUInt64(sum(least(ChildNs, Duration))) AS child_ns,
    quantileTDigestState(0.95)(Duration) AS duration_digest
FROM otel_traces
WHERE NodeId != ''
GROUP BY Day, ServiceName, NodeId, CodeVersion;

-- spans stored before this migration
INSERT INTO execscope_node_stats
SELECT toDate(Timestamp), ServiceName, NodeId, CodeVersion, toUInt64(count()), toUInt64(sum(Duration)),
       toUInt64(sum(least(ChildNs, Duration))), quantileTDigestState(0.95)(Duration)
FROM otel_traces
WHERE NodeId != '' AND (SELECT count() FROM execscope_node_stats) = 0
GROUP BY toDate(Timestamp), ServiceName, NodeId, CodeVersion;
