"""The docker-compose stacks and Grafana's provisioning: every file they mount exists (the dashboards folder
used not to), the light stack has no gateway and no Tempo, and its Grafana reaches the services it names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import tomllib
import yaml

from modeltel.generators.dashboards import TRACE_DATASOURCE_UID
from tests.binaries import require_binary

ROOT = Path(__file__).resolve().parents[1]
OTELCOL = ROOT / "collector" / "otelcol"
STACKS = {"full": OTELCOL / "docker-compose.yaml", "light": OTELCOL / "docker-compose.light.yaml"}
PROVISIONING = ROOT / "dashboards" / "provisioning"


def _compose(name: str) -> dict:
    return yaml.safe_load(STACKS[name].read_text())


def _mounts(service: dict) -> dict[str, Path]:
    """container path -> host path of a service's bind mounts (relative to the compose file)."""
    out = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("."):
            out[container] = (OTELCOL / host).resolve()
    return out


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_every_mounted_file_exists(stack: str) -> None:
    for name, service in _compose(stack)["services"].items():
        for container, host in _mounts(service).items():
            if "secrets" not in container:  # provided at deploy time
                assert host.exists(), f"{stack}: {name} mounts {host}, which does not exist"


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_grafana_gets_the_generated_dashboards_and_a_provider(stack: str) -> None:
    mounts = _mounts(_compose(stack)["services"]["grafana"])
    dashboards = mounts["/var/lib/grafana/dashboards"]
    assert sorted(p.stem for p in dashboards.glob("*.json")) == ["modeltel-gpu", "modeltel-models", "modeltel-slo"]
    providers = [
        provider
        for container, host in mounts.items()
        if container.startswith("/etc/grafana/provisioning")
        for f in host.rglob("*.yaml")
        for provider in yaml.safe_load(f.read_text()).get("providers", [])
    ]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]


def test_light_stack_is_collector_prometheus_alertmanager_grafana_and_apps() -> None:
    services = _compose("light")["services"]
    assert set(services) == {"iris", "modeltel-collector", "prometheus", "alertmanager", "grafana"}
    assert "otelcol" not in services and "tempo" not in services


def test_light_provisioning_points_at_the_light_services() -> None:
    services = _compose("light")["services"]
    (datasources,) = (yaml.safe_load(f.read_text())["datasources"] for f in (PROVISIONING / "datasources").glob("*"))
    by_type = {d["type"]: d for d in datasources}
    assert set(by_type) == {"prometheus", "alertmanager", "jaeger"}
    for d in datasources:
        host = d["url"].split("://")[1].split(":")[0]
        assert host in services, d["url"]
    jaeger = by_type["jaeger"]
    assert jaeger["uid"] == TRACE_DATASOURCE_UID and jaeger["url"].endswith("/jaeger")  # serve/jaeger.py's prefix
    listen = tomllib.loads((OTELCOL / "modeltel-collector.light.toml").read_text())["collector"]["listen"]
    assert jaeger["url"].split("/")[2].endswith(":" + listen.rsplit(":", 1)[1])
    destinations = by_type["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destinations == [{"name": "trace_id", "datasourceUid": TRACE_DATASOURCE_UID}]


def test_light_prometheus_config_is_valid() -> None:
    promtool = require_binary("promtool", package="prometheus")
    res = subprocess.run([promtool, "check", "config", str(OTELCOL / "prometheus.light.yml")], capture_output=True)
    assert res.returncode == 0, res.stderr
