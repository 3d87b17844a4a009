"""The Grafana dashboard and Prometheus alerts in deploy/ name only metrics the relay exports.

The exported names come from a real scrape of a running relay; the alert rules pass
``promtool check rules`` and their unit tests (``promtool test rules``), and the scrape config
``promtool check config``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "relay.json"
PROMETHEUS = ROOT / "deploy" / "prometheus"
MADE_BY_PROMETHEUS = {"up"}
"""Series Prometheus itself writes for every target."""
PROMQL_WORDS = {
    "by",
    "on",
    "without",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w$:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (not functions, keywords or label names)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = _GROUPING.sub(" ", text)
    return {n for n in _NAME.findall(text) if n.lower() not in PROMQL_WORDS}


def test_the_promql_reader_finds_series_names():
    expr = (
        'histogram_quantile(0.99, sum by (node, le) (rate(relay_x_bucket{a="b(c)"}[5m])'
        ' * on (instance) group_left (node) relay_node_info{node=~"$node"})) > 0.1'
        ' or up{job="relay"} == 0 and rate(y_total[$__rate_interval]) == 0'
    )
    assert metric_names(expr) == {"relay_x_bucket", "relay_node_info", "up", "y_total"}


def exported_names(text: str) -> set[str]:
    """Every series name a scrape offers, also of families with no sample yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.update({family.name + "_total", family.name + "_created"})
        elif family.type == "histogram":
            names.update(
                family.name + suffix for suffix in ("_bucket", "_sum", "_count", "_created")
            )
        else:
            names.add(family.name)
    return names


@pytest.fixture
async def exported(relay) -> set[str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(relay.base_url + "/metrics") as r:
            assert r.status == 200
            return exported_names(await r.text())


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} shows nothing"
        out += [(panel["title"], t["expr"]) for t in panel["targets"]]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            out.append((var["name"], var["definition"].replace("label_values(", "").split(",")[0]))
    return out


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((PROMETHEUS / "relay-alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


async def test_the_dashboard_reads_only_what_the_relay_exports(exported):
    used: set[str] = set()
    for title, expr in dashboard_exprs():
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        missing = names - exported - MADE_BY_PROMETHEUS
        assert not missing, f"{title}: {sorted(missing)} are not exported by the relay"
        used |= names
    # what operations asked for: calls per node, forwarding rate and latency, CPU, vision lag,
    # recording errors, TURN/ICE failures, stalls
    assert {
        "relay_node_info",
        "relay_calls",
        "relay_media_packets_forwarded_total",
        "relay_forward_latency_seconds_bucket",
        "process_cpu_seconds_total",
        "relay_vision_decision_latency_seconds_bucket",
        "relay_recording_errors_total",
        "relay_ice_failures_total",
        "relay_media_streams_stalled",
    } <= used


async def test_the_alerts_read_only_what_the_relay_exports(exported):
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "RelayNodeDown",
        "RelayNodeNoHeartbeat",
        "RelayVisionBehind",
        "RelayRecordingWriteErrors",
        "RelayJoinsRefused",
        "RelaySignallingErrors",
    }
    for rule in rules:
        missing = metric_names(rule["expr"]) - exported - MADE_BY_PROMETHEUS
        assert not missing, f"{rule['alert']}: {sorted(missing)} are not exported"
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def _promtool(*args: str) -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is required (Debian package prometheus; scripts/system-deps)")
    done = subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_and_unit_tests_the_alert_rules():
    assert "SUCCESS: 10 rules found" in _promtool("check", "rules", "relay-alerts.yml")
    out = _promtool("test", "rules", "relay-alerts.test.yml")
    assert "SUCCESS" in out and "FAILED" not in out
    tested = set(
        re.findall(r"alertname: (\w+)", (PROMETHEUS / "relay-alerts.test.yml").read_text())
    )
    assert tested == {r["alert"] for r in alert_rules()}, "every alert has a unit test"


def test_promtool_checks_the_scrape_config():
    assert "is valid prometheus config file syntax" in _promtool(
        "check", "config", "prometheus.yml"
    )


def test_every_dashboard_query_parses(tmp_path):
    """Grafana's variables filled in, each query becomes a recording rule promtool parses."""
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$node", ".*"),
        }
        for i, (_title, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in _promtool("check", "rules", str(path))
