"""execscope: time-travel debugging and deep observability for Python, as OpenTelemetry plugins.

The import root holds the CLI and configuration; the pipeline lives in the sub-packages
``execscope.instrumentation`` (rewrite + capture), ``execscope.collector`` (spool/Kafka to ClickHouse),
``execscope.storage`` (schema and store client), ``execscope.queries`` and ``execscope.dashboards``.
"""

__version__ = "0.1.0"
