"""``dasan kamailio render --out DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ivr.kamailio.render import KamailioRenderError, render, write
from ivr.yamlfile import DataError


def _render(args: argparse.Namespace) -> int:
    from ivr.cli import settings_from

    settings = settings_from(args)
    out = Path(args.out)
    try:
        files = render(settings, out)
    except (KamailioRenderError, DataError) as exc:
        print(f"render failed / 렌더링 실패: {exc}", file=sys.stderr)
        return 2
    changed = write(files, out)
    for name in files:
        print(f"{'wrote' if name in changed else 'same '} {out / name}")
    print(f"check it: kamailio -c -f {out / 'kamailio.cfg'}")
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("kamailio", help="Kamailio in front of the Asterisk nodes / 클러스터 SIP 프록시")
    kamailio_sub = parser.add_subparsers(dest="kamailio_command", required=True)
    render_parser = kamailio_sub.add_parser("render", help="write kamailio.cfg, dispatcher.list and db/ to a folder")
    render_parser.add_argument("--out", required=True, help="folder to write into (paths in kamailio.cfg point here)")
    render_parser.set_defaults(func=_render)
