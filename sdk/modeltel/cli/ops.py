"""``modeltel alerts generate``, ``modeltel dashboards generate`` and ``modeltel slo report``: the ops commands
(PyYAML and grafana-foundation-sdk: the ``ops`` extra)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["add_ops_commands"]

DEFAULT_ALERTS_DIR = Path("alerts")
DEFAULT_DASHBOARDS_DIR = Path("dashboards")


def _need_yaml(command: str) -> bool:
    try:
        import yaml  # noqa: F401
    except ImportError:
        print(f"modeltel {command}: needs PyYAML; pip install 'modeltel[ops]'", file=sys.stderr)
        return False
    return True


def _write_or_check(
    command: str, args: argparse.Namespace, stale: Callable[[], list], write: Callable[[], list]
) -> int:
    """The generate commands' one flow: with ``--check``, list stale files (exit 1); else write them."""
    from ..generators.sloconfig import SLOConfigError

    try:
        if args.check:
            out_of_date = stale()
            for rel in out_of_date:
                print(f"modeltel {command}: {args.dir / rel} is out of date", file=sys.stderr)
            return 1 if out_of_date else 0
        written = write()
    except SLOConfigError as e:
        print(f"modeltel {command}: {e}", file=sys.stderr)
        return 2
    print(f"modeltel {command}: {len(written)} files under {args.dir}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    if not _need_yaml("alerts generate"):
        return 2
    from ..generators import stale_files, write_alerts

    return _write_or_check(
        "alerts generate", args, lambda: stale_files(args.dir), lambda: write_alerts(args.dir, args.config)
    )


def _dashboards(args: argparse.Namespace) -> int:
    if not _need_yaml("dashboards generate"):
        return 2
    try:
        from ..generators.dashboards import stale_dashboards, write_dashboards
    except ImportError:
        print(
            "modeltel dashboards generate: needs grafana-foundation-sdk; pip install 'modeltel[ops]'", file=sys.stderr
        )
        return 2
    return _write_or_check(
        "dashboards generate",
        args,
        lambda: stale_dashboards(args.dir, args.config),
        lambda: write_dashboards(args.dir, args.config),
    )


def _report(args: argparse.Namespace) -> int:
    if not _need_yaml("slo report"):
        return 2
    from .slo_report import run_report

    return run_report(args.prometheus, args.config, args.format, args.output)


def _generate_command(
    sub: argparse._SubParsersAction,
    name: str,
    summary: str,
    what: str,
    directory: Path,
    config: Path | None,
    func: Callable[[argparse.Namespace], int],
) -> None:
    """``modeltel <name> generate [--dir] [--config] [--check]``: the generators' one command shape."""
    group = sub.add_parser(name, help=summary).add_subparsers(dest=f"{name}_cmd", required=True)
    gen = group.add_parser("generate", help=what)
    gen.add_argument("--dir", type=Path, default=directory, help=f"output folder (default ./{directory})")
    config_default = "%(default)s" if config else "<dir>/slo-config.yaml"
    gen.add_argument("--config", type=Path, default=config, help=f"SLO config (default {config_default})")
    gen.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date (default: off)"
    )
    gen.set_defaults(func=func)


def add_ops_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``alerts``, ``dashboards`` and ``slo`` on the ``modeltel`` parser."""
    _generate_command(
        sub, "alerts", "alert rules, SLO rules and Alertmanager config from the taxonomy",
        "write rules, promtool tests, runbooks and alertmanager.yml", DEFAULT_ALERTS_DIR, None, _generate,
    )  # fmt: skip
    _generate_command(
        sub, "dashboards", "Grafana dashboards and provisioning from the taxonomy",
        "write dashboards/*.json and dashboards/provisioning/", DEFAULT_DASHBOARDS_DIR,
        DEFAULT_ALERTS_DIR / "slo-config.yaml", _dashboards,
    )  # fmt: skip

    slo = sub.add_parser("slo", help="service level objectives")
    slo_sub = slo.add_subparsers(dest="slo_cmd", required=True)
    rep = slo_sub.add_parser("report", help="error budget per SLO and model, from Prometheus")
    rep.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://localhost:9090")
    rep.add_argument(
        "--config", type=Path, default=DEFAULT_ALERTS_DIR / "slo-config.yaml", help="SLO config (default: %(default)s)"
    )
    rep.add_argument("--format", choices=("table", "json", "markdown"), default="table", help="(default: table)")
    rep.add_argument("--output", type=Path, help="write here (default: standard output)")
    rep.set_defaults(func=_report)
