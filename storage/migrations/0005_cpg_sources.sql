-- The source text of every module version in the CPG, so that the cinema and other views show code
-- without the recorded machine's files.
CREATE TABLE IF NOT EXISTS cpg_sources (
    code_version LowCardinality(String),
    module LowCardinality(String),
    file String,
    source String CODEC(ZSTD(3)),
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (code_version, module)
SETTINGS non_replicated_deduplication_window = 10000;
