-- Static code property graph: one row per instrumentable construct per code version (node IDs are
-- the join key to otel_traces.NodeId / execscope_events.NodeId; CodeVersion picks the code that ran).
-- ReplacingMergeTree + dedup window: publishing the same module version twice leaves one row.
CREATE TABLE IF NOT EXISTS cpg_nodes (
    node_id String,
    code_version LowCardinality(String),
    module LowCardinality(String),
    qualname String,                 -- qualified name of the enclosing definition
    kind LowCardinality(String),     -- module, class, function, lambda, if, for, call, target, arm, ...
    name String,                     -- defined/assigned name, or arm label
    file String,
    line UInt32,
    col UInt32,
    end_line UInt32,
    end_col UInt32,
    parent_id String,                -- nearest enclosing node with an ID ('' for the module)
    code String,                     -- bounded source text of the node's first line
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (node_id, code_version)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS cpg_edges (
    code_version LowCardinality(String),
    src String,
    dst String,
    kind LowCardinality(String),     -- AST, CFG, CDG, REACHING_DEF, CALL, ...
    label String,                    -- branch label (true/false/exception/case N), variable, order
    properties Map(LowCardinality(String), String),
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (code_version, kind, src, dst, label)
SETTINGS non_replicated_deduplication_window = 10000;
