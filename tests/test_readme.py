"""The README, followed word for word: its shell blocks run in a fresh virtualenv, in a copy of this checkout
(the quick start installs from it, as the README says) or next to the ``dist/`` that ``make dist`` builds in
it, and every block says whether and where it is tested.

The only liberties taken: the README's ports (4317, 4318, 9464, 8000) become free ones, and after a line
that starts a server in the background the harness waits for its ports, as a user would. Nothing else is
set up: no constraints file, no wheel folder, no variables of the test's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

import modeltel
from modeltel import config
from modeltel.cli.alertstack import missing_binaries

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- (?P<marker>[^>]*) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)
PORTS = ("4317", "4318", "9464", "8000")


def blocks(lang: str) -> list[tuple[str, str]]:
    return [(m["marker"] or "", m["code"]) for m in BLOCK.finditer(README) if m["lang"] == lang]


def _tested(lang: str, what: str) -> str:
    (code,) = [code for marker, code in blocks(lang) if marker.startswith("tested") and what in marker]
    return code


def test_every_shell_block_says_whether_it_is_tested() -> None:
    for marker, code in blocks("sh"):
        assert marker.startswith(("tested:", "not run here:")), code


def test_the_configuration_table_lists_every_variable_modeltel_reads() -> None:
    read = {name for name in config.variables_read() if name.startswith("MODELTEL_")}
    documented = set(re.findall(r"^\| `(MODELTEL_[A-Z_]+)`", README, re.M))
    assert read == documented


def test_the_kubernetes_snippet_sets_only_variables_modeltel_reads() -> None:
    spec = yaml.safe_load(_tested("yaml", "parses"))
    assert spec["kind"] == "InferenceService"
    (container,) = spec["spec"]["predictor"]["containers"]
    assert container["command"][:3] == ["modeltel", "run", "--"]
    assert {e["name"] for e in container["env"]} <= config.variables_read()


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _copy_checkout(dest: Path) -> Path:
    """This checkout's files as a reader's clone has them (tracked and new, not ignored), working-tree content."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
        capture_output=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _reader_env() -> dict[str, str]:
    """The environment a new user has: no venv on PATH, no PYTHONPATH, no OTEL_/MODELTEL_ variables."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != Path(sys.executable).parent)
    drop = ("OTEL_", "MODELTEL_", "VIRTUAL_ENV", "PYTHONPATH", "PIP_CONSTRAINT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(PATH=path, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the checkout with the quick start's app.py in its top folder, as the README says."""
    checkout = _copy_checkout(tmp_path_factory.mktemp("checkout"))
    (checkout / "app.py").write_text(_tested("python", "app.py"))
    return {"dir": checkout, "env": _reader_env(), "ports": {p: _free_port() for p in PORTS}}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make dist`` in a copy of the checkout (its ``setup`` prerequisite, the CI venv, is this one)."""
    checkout = _copy_checkout(tmp_path_factory.mktemp("dist-checkout"))
    proc = subprocess.run(
        ["make", "--no-print-directory", "-o", "setup", f"BIN={Path(sys.executable).parent}", "dist"],
        cwd=checkout, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("PASSED") == 2, proc.stdout  # twine check: the sdist and the wheel
    return checkout / "dist"


def _sh(workdir: dict, script: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-ec", script], cwd=cwd or workdir["dir"], env=workdir["env"], capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_make_dist_builds_an_sdist_and_a_wheel(dist: Path) -> None:
    version = modeltel.__version__
    assert sorted(p.name for p in dist.iterdir()) == [
        f"modeltel-{version}-py3-none-any.whl",
        f"modeltel-{version}.tar.gz",
    ]


def _readme_extras() -> list[str]:
    """Every extra the README names: in ``modeltel[...]`` or ``./[...]``, and the Install section's list."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = {e for group in re.findall(r"(?:modeltel|\.?/)\[([a-z0-9_,]+)\]", README) for e in group.split(",")}
    install = README.split("## Install", 1)[1].split("\n## ", 1)[0]
    named |= {word for word in re.findall(r"`([a-z0-9_]+)`", install) if word in extras}
    assert named <= set(extras), named - set(extras)
    return sorted(named)


def test_every_extra_the_readme_names_resolves_on_its_own(dist: Path) -> None:
    """``pip install --dry-run`` of each, as a reader would ask for it: no constraints file of the test suite."""
    (wheel,) = dist.glob("*.whl")
    env = _reader_env()

    def resolve(extra: str) -> tuple[str, int, str]:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
             f"modeltel[{extra}] @ {wheel.as_uri()}"],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        return extra, proc.returncode, proc.stderr[-1500:]

    extras = _readme_extras()
    assert len(extras) >= 13  # the frameworks, runtimes, examples, analytics, ops
    with ThreadPoolExecutor(4) as pool:
        failed = [(extra, err) for extra, code, err in pool.map(resolve, extras) if code != 0]
    assert not failed, failed


def test_a_framework_without_its_extra_says_what_to_install(workdir: dict) -> None:
    """Before following the README: FastAPI installed, modeltel without its ``fastapi`` extra."""
    proc = _sh(workdir, "python3 -m venv noextra && noextra/bin/pip install -q ./ fastapi uvicorn scikit-learn")
    assert proc.returncode == 0, proc.stderr
    quiet = "OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none"
    proc = _sh(workdir, f'{quiet} noextra/bin/modeltel run -- noextra/bin/python -c "import fastapi"')
    lines = [line for line in proc.stderr.splitlines() if line.startswith("modeltel:")]
    assert len(lines) == 1 and "pip install 'modeltel[fastapi]'" in lines[0], proc.stderr
    proc = _sh(workdir, "noextra/bin/opentelemetry-bootstrap -a requirements")
    assert "opentelemetry-instrumentation-fastapi" in proc.stdout


def _with_ports(workdir: dict, code: str) -> str:
    for readme_port, port in workdir["ports"].items():
        code = code.replace(f":{readme_port}", f":{port}").replace(f"--port {readme_port}", f"--port {port}")
    if "modeltel collector" in code:  # the README relies on the collector's default addresses
        p = workdir["ports"]
        code = code.replace(
            "modeltel collector &",
            f"modeltel collector --otlp-http 127.0.0.1:{p['4318']} --otlp-grpc 127.0.0.1:{p['4317']} "
            f"--listen 127.0.0.1:{p['9464']} &",
        )
    return code


def _as_script(workdir: dict, code: str) -> str:
    """The block's lines, each background start followed by a wait for the ports it opens."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        out.append(line)
        if line.rstrip().endswith("&") or ("#" in line and line.split("#")[0].rstrip().endswith("&")):
            ports = [p for p in workdir["ports"].values() if f":{p}" in line or f"--port {p}" in line]
            waits = " ".join(f"/dev/tcp/127.0.0.1/{p}" for p in ports)
            out.append(f"for f in {waits}; do until (exec 3<>$f) 2>/dev/null; do sleep 0.2; done; done")
    return "\n".join(out)


def test_the_fastapi_quick_start_word_for_word(workdir: dict) -> None:
    start = _as_script(workdir, _with_ports(workdir, _tested("sh", "copy of the checkout")))
    (workdir["dir"] / "look.sh").write_text(_with_ports(workdir, _tested("sh", "after the one above")))
    script = f"""{start}
for i in $(seq 120); do  # metrics arrive within the export interval (10 s); a loaded machine takes longer
  if out=$(bash -e look.sh); then break; fi
  sleep 0.5
done
echo "$out"
"""
    out, err = workdir["dir"] / "quickstart.out", workdir["dir"] / "quickstart.err"
    with out.open("w") as stdout_file, err.open("w") as stderr_file:  # files: the servers keep them open
        proc = subprocess.Popen(
            ["bash", "-ec", script], cwd=workdir["dir"], env=workdir["env"], stdout=stdout_file,
            stderr=stderr_file, start_new_session=True,
        )  # fmt: skip
    try:
        proc.wait(timeout=300)
        stdout, stderr = out.read_text(), err.read_text()
        assert proc.returncode == 0, stderr
        assert re.search(r'model_predictions_total\{[^}]*model_name="iris"[^}]*status="success"', stdout), stdout
        assert re.search(r'model_stage_latency_seconds_count\{[^}]*stage="inference"', stdout), stdout
        trace_id = json.loads(stdout.strip().splitlines()[-1])["traces"][0]["trace_id"]
        listen = f"http://127.0.0.1:{workdir['ports']['9464']}"
        with urllib.request.urlopen(f"{listen}/api/traces/{trace_id}", timeout=10) as response:
            names = {span["name"] for span in json.load(response)["spans"]}
        assert {"POST /predict", "inference"} <= names, names
        assert "Traceback" not in stderr, stderr
    finally:
        with contextlib.suppress(ProcessLookupError):  # the servers it started in the background
            os.killpg(proc.pid, signal.SIGTERM)


def test_the_demo_runs_from_the_wheel_make_dist_built(workdir: dict, dist: Path, tmp_path: Path) -> None:
    """Another machine: only ``dist/`` copied there, then the README's block in a fresh venv."""
    shutil.copytree(dist, tmp_path / "dist")
    subprocess.run(["python3", "-m", "venv", "venv"], cwd=tmp_path, env=workdir["env"], check=True)
    block = _tested("sh", "with dist/")
    proc = _sh(workdir, ". venv/bin/activate\n" + block, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "prediction (end to end)" in proc.stdout and "slowest request: trace" in proc.stdout
    # no checkout, yet every scene: the alert rules are rendered from the package, the detectors run
    if not missing_binaries():
        assert "Alertmanager notified receiver 'pager'" in proc.stdout, proc.stdout[-3000:]
    assert "the collector detected confidence_drift" in proc.stdout, proc.stdout[-3000:]
