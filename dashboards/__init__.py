"""Grafana dashboards (ClickHouse datasource) and the HTML execution cinema: generators, templates and
provisioning files. Nothing is generated yet; the tables they read are described in the README."""
