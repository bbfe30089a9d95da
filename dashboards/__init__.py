"""Grafana dashboards as code: built in Python, committed as JSON (dashboards/json/), provisioned."""
