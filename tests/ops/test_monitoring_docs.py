"""The shipped alert rules and dashboard are valid and use metrics the registry exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import requests

DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring"


def test_alert_rules_pass_promtool():
    result = subprocess.run(
        ["promtool", "check", "rules", str(DOCS / "prometheus-alerts.yml")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_dashboard_and_alerts_only_use_exported_metrics(registry):
    requests.post(registry.url + "/v2/gc")  # so that the GC series exist
    exported = set(re.findall(r"^(registry_\w+?)(?:_bucket|_count|_sum|_created)?[{ ]",
                              requests.get(registry.url + "/metrics").text, re.M))
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"registry_\w+", target["expr"]))
    used |= set(re.findall(r"registry_\w+", (DOCS / "prometheus-alerts.yml").read_text()))
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert used <= exported | {"registry_auth_failures_total"}, used - exported
