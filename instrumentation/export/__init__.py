"""Export: captured frames become OTLP and leave the process.

Owns: :mod:`.otlp_encode` (frames to one ``ExportTraceServiceRequest``) over :mod:`.otlp_wire` (the
protobuf wire subset), :mod:`.spool` and :mod:`.spool_exporter` (the local spool of the embedded
default) and :mod:`.kafka_exporter` (the topic ``otlp_spans``), with :mod:`.kafka_security` (SASL and TLS
settings of every Kafka client, the exporter's and the collector's).

May import: :mod:`..capture` (frame layout, value rendering) and :mod:`..nodes` (node rows for the
spool). Never :mod:`..analysis`, the collector, the store or the queries.
"""
