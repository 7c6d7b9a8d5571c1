"""``dasan asterisk render --out DIR`` and ``dasan asterisk apply``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ivr.asterisk.apply import ApplyError, ApplyResult, apply
from ivr.asterisk.render import RenderError, render, write
from ivr.config import Settings


def _render(args: argparse.Namespace) -> int:
    from ivr.cli import settings_from

    settings = settings_from(args)
    try:
        files = render(settings, node=args.node)
    except RenderError as exc:
        print(f"render failed / 렌더링 실패: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    changed = write(files, out)
    for name in files:
        print(f"{'wrote' if name in changed else 'same '} {out / name}")
    print(f"{len(files)} files in {out} ({len(changed)} changed) / {len(changed)}개 변경")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from ivr.cli import settings_from

    settings = settings_from(args)
    target = Path(args.config_dir) if args.config_dir else None
    if args.node or settings.cluster.asterisk_nodes:
        return _apply_cluster(settings, args.node, target, not args.no_reload)
    try:
        result = asyncio.run(apply(settings, target, reload=not args.no_reload))
    except RenderError as exc:
        print(f"render failed, nothing written / 렌더링 실패, 변경 없음: {exc}", file=sys.stderr)
        return 2
    except ApplyError as exc:
        print(f"files written, reload failed / 파일은 기록됨, 리로드 실패: {exc}", file=sys.stderr)
        return 1
    _report(result)
    return 0 if result.ok else 1


def _apply_cluster(settings: Settings, nodes: list[str] | None, target: Path | None, reload: bool) -> int:
    """Every node of ``cluster:`` (or the ``--node`` ones), each into its own folder over its own AMI."""
    from ivr.cluster.apply import apply_nodes

    try:
        done = asyncio.run(apply_nodes(settings, nodes, target, reload))
    except RenderError as exc:
        print(f"render failed, no node written / 렌더링 실패, 변경 없음: {exc}", file=sys.stderr)
        return 2
    for node in done:
        print(f"[{node.node}] {node.config_dir}")
        if node.result is not None:
            _report(node.result, f"[{node.node}] ")
        if node.unreachable:
            print(f"[{node.node}] files written, reload failed / 파일은 기록됨, 리로드 실패: {node.unreachable}",
                  file=sys.stderr)
        for warning in node.warnings:
            print(f"[{node.node}] warning / 경고: {warning}", file=sys.stderr)
    return 0 if all(node.ok for node in done) else 1


def _report(result: ApplyResult, prefix: str = "") -> None:
    if not result.changed and not result.reloaded and not result.failed:
        print(f"{prefix}{result.config_dir}: up to date, nothing to reload / 변경 없음")
    for name in result.changed:
        print(f"{prefix}wrote {result.config_dir / name}")
    for module in result.reloaded:
        print(f"{prefix}reloaded {module} / 리로드됨")
    for module, message in result.failed.items():
        print(f"{prefix}reload {module} failed / 리로드 실패: {message}", file=sys.stderr)
    for name in result.restart_needed:
        print(f"{prefix}{name} changed: restart Asterisk to apply it / 적용하려면 Asterisk 재시작 필요")


def register(sub: Any) -> None:
    parser = sub.add_parser("asterisk", help="Asterisk configuration / Asterisk 설정")
    asterisk_sub = parser.add_subparsers(dest="asterisk_command", required=True)
    render_parser = asterisk_sub.add_parser("render", help="write the rendered configuration to a folder")
    render_parser.add_argument("--out", required=True, help="folder to write into")
    render_parser.add_argument("--node", help="a node of cluster.asterisk_nodes: its own systemname, SIP "
                               "and AMI addresses, the trunk and agents through Kamailio (docs/cluster.md)")
    render_parser.set_defaults(func=_render)
    apply_parser = asterisk_sub.add_parser(
        "apply", help="render into Asterisk's folder (asterisk.config_dir) and reload changed modules over AMI")
    apply_parser.add_argument("--config-dir", help="write here instead of asterisk.config_dir")
    apply_parser.add_argument("--no-reload", action="store_true", help="write only; do not reload")
    apply_parser.add_argument("--node", action="append", metavar="NAME",
                              help="a node of cluster.asterisk_nodes (repeatable): its own files into its "
                              "config_dir, reloaded over its AMI; default with cluster: every node")
    apply_parser.set_defaults(func=_apply)
