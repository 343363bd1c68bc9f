-- Per-function facts of the code property graph (one row per function per code version), and the
-- files `execscope analyze` has looked at (so an unchanged file is not analysed again and a file
-- that failed says why).
CREATE TABLE IF NOT EXISTS cpg_functions (
    node_id String,
    code_version LowCardinality(String),
    module LowCardinality(String),
    qualname String,
    file String,
    line UInt32,
    end_line UInt32,
    cyclomatic UInt32,               -- McCabe, counted as radon counts it (see instrumentation/metrics.py)
    nesting_depth UInt32,
    statements UInt32,
    parameters UInt32,
    cfg_nodes UInt32,
    cfg_edges UInt32,
    is_async Bool,
    is_generator Bool,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (node_id, code_version)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS cpg_files (
    file String,
    module LowCardinality(String),
    code_version LowCardinality(String),
    lines UInt32,
    status LowCardinality(String),   -- ok | error
    message String,
    analysed_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(analysed_at)
ORDER BY (file, module, code_version);
