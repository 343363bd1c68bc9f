"""From spool (or Kafka) to ClickHouse: sources, processors (decode, enrich, redact, batch), writer."""
