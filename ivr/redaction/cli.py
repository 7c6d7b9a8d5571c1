"""``dasan redact``: print standard input with personal data masked, to check a rule."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _redact(args: argparse.Namespace) -> int:
    from ivr.redaction.engine import RulesError, load_rules, mask_text

    try:
        rules = load_rules(Path(args.rules) if args.rules else None)
    except (RulesError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(mask_text(sys.stdin.read(), rules))
    sys.stdout.flush()
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("redact", help="mask personal data in standard input (check the rules) "
                                      "/ 개인정보 가리기 확인")
    p.add_argument("--rules", help="a rules file (default: the shipped ivr/redaction/rules.yaml)")
    p.set_defaults(func=_redact)
