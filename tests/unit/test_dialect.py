"""SqlTemplate: one statement rendered for the store (bound parameters, macros expanded) and for
Grafana (variables, macros left to the plugin); the integration tests run both renderings."""

from __future__ import annotations

import pytest

from execscope.queries.dialect import ALL_TIME, SqlTemplate, TemplateError

T = SqlTemplate("""
SELECT count() FROM otel_traces
WHERE $__timeFilter(Timestamp) AND $__conditionalAll(ServiceName = {service:String}, $service)
  AND Duration > {min_ns:UInt64}
GROUP BY $__timeInterval(Timestamp)
LIMIT {limit:UInt32}
""", {"service": ""})


def test_store_rendering_binds_values_and_expands_the_macros() -> None:
    sql, params = T.for_store({"min_ns": 5, "limit": 10}, time_range=(100, 200), interval_s=30)
    assert "Timestamp >= toDateTime({__from:Int64}) AND Timestamp <= toDateTime({__to:Int64})" in sql
    assert "AND 1=1" in sql and "ServiceName" not in sql  # the empty service passes
    assert "toStartOfInterval(toDateTime(Timestamp), toIntervalSecond({__interval_s:UInt32}))" in sql
    assert "$__" not in sql
    assert params == {"service": "", "min_ns": 5, "limit": 10, "__from": 100, "__to": 200, "__interval_s": 30}
    sql, params = T.for_store({"service": "shop", "min_ns": 0, "limit": 1})
    assert "ServiceName = {service:String}" in sql and (params["__from"], params["__to"]) == ALL_TIME


def test_grafana_rendering_uses_variables_and_leaves_macros_to_the_plugin() -> None:
    sql = T.for_grafana({"limit": 50})
    assert "$__conditionalAll(ServiceName = ${service:sqlstring}, $service)" in sql
    assert "Duration > toUInt64OrZero(${min_ns:sqlstring})" in sql
    assert "$__timeFilter(Timestamp)" in sql and "$__timeInterval(Timestamp)" in sql
    assert sql.endswith("LIMIT 50") and "{" not in sql.replace("${", "")
    assert "1=1" in T.for_grafana({"service": "", "limit": 1, "min_ns": 0})  # a constant All
    assert "'it''s'" not in T.for_grafana({"service": "it's", "limit": 1, "min_ns": 0})
    assert "ServiceName = 'it\\'s'" in T.for_grafana({"service": "it's", "limit": 1, "min_ns": 0})


def test_nested_conditional_all_and_errors() -> None:
    t = SqlTemplate("SELECT 1 WHERE $__conditionalAll(a = {a:String} AND $__conditionalAll(b = {b:String}, $b), $a)")
    assert t.for_store({"a": "x", "b": ""})[0] == "SELECT 1 WHERE a = {a:String} AND 1=1"
    assert t.for_store({"a": "", "b": "y"})[0] == "SELECT 1 WHERE 1=1"
    with pytest.raises(TemplateError, match="no value for"):
        t.for_store({"a": "x"})
    with pytest.raises(TemplateError, match="unbalanced"):
        SqlTemplate("SELECT $__timeFilter(Timestamp").for_store({})
    with pytest.raises(TemplateError, match="only String and numeric"):
        SqlTemplate("SELECT {ids:Array(String)}").for_grafana()
