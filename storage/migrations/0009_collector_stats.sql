-- What `execscope collect` reports (`--stats`), one row per collector every few seconds and at its
-- end, so the Pipeline Health dashboard can show it over time. Counters are cumulative for one
-- collector run (Collector: client id, or --instance-id); RowsPerS is the rate since the row before.
CREATE TABLE IF NOT EXISTS execscope_collector_stats (
    Timestamp DateTime64(3) CODEC(Delta, ZSTD(1)),
    Collector LowCardinality(String),
    Topic LowCardinality(String),
    Messages UInt64,
    Spans UInt64,
    Batches UInt64,
    Nodes UInt64,
    DeadLetters UInt64,
    StoreErrors UInt64,
    ReplayedBatches UInt64,
    Rejoins UInt64,
    AssignedPartitions UInt32,
    BatchSpansMin UInt64,
    BatchSpansMax UInt64,
    BatchSpansMean Float64,
    RowsPerS Float64,                -- spans stored per second since the previous row
    InsertSeconds Float64,
    TotalLag UInt64,                 -- records not yet consumed, all partitions
    Lag Map(String, UInt64),         -- per topic:partition
    LastError String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (Collector, Timestamp)
TTL toDateTime(Timestamp) + INTERVAL 90 DAY;
