"""Monitoring as code: the metric catalog, Grafana dashboards and Prometheus rules the Monitoring component ships."""
