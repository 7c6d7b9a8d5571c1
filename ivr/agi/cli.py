"""``dasan call`` (walk a menu without a phone), ``dasan agi`` (FastAGI alone), ``dasan prompts``."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ivr.cli import settings_from
from ivr.contracts import IvrResult, Var

KEY_TOKEN = re.compile(r"[0-9*#]+|T|H")  # keys for one prompt, or a timeout, or a hang-up


def _call(args: argparse.Namespace) -> int:
    return asyncio.run(_call_async(args))


async def _call_async(args: argparse.Namespace) -> int:
    from ivr import sitetime
    from ivr.agi.caller import ScriptedCaller
    from ivr.agi.server import FastAgiServer
    from ivr.bus import MemoryBus
    from ivr.context import AppContext
    from ivr.db import Database
    from ivr.engine.engine import Call
    from ivr.engine.runtime import IvrRuntime

    bad_keys = [token for token in args.digits.split() if not KEY_TOKEN.fullmatch(token)]
    if bad_keys:
        print(f"dasan call: --digits {' '.join(bad_keys)!r}: keys are 0-9, * and #, one token per prompt "
              "(T lets the prompt time out, H hangs up) / 누를 수 있는 키는 0-9, *, # 입니다", file=sys.stderr)
        return 2
    settings = settings_from(args)
    tz = ZoneInfo(settings.timezone)
    sitetime.use(settings.timezone)  # --record writes tracking numbers with the site's day
    at = datetime.fromisoformat(args.at).replace(tzinfo=tz) if args.at else None
    with tempfile.TemporaryDirectory() as tmp:
        # A test call writes to a throwaway database unless --record asks for the real one.
        url = settings.database_url if args.record else f"sqlite+aiosqlite:///{Path(tmp) / 'call.db'}"
        db = Database(url)
        await db.aupgrade()
        ctx = AppContext(settings, db, MemoryBus())
        runtime = IvrRuntime.from_settings(ctx, clock=lambda: at)
        calls: list[Call] = []

        async def main(ch: object) -> None:
            calls.append(await runtime.engine.main(ch))  # type: ignore[arg-type]

        languages = runtime.engine.menus.languages
        if args.lang not in languages:
            await db.dispose()
            print(f"dasan call: --lang {args.lang!r} is not a language of the menus ({', '.join(languages)})"
                  f" / 메뉴에 없는 언어입니다", file=sys.stderr)
            return 2
        routes = runtime.routes()
        routes["main"] = main
        server = FastAgiServer(routes, "127.0.0.1", 0, command_timeout=10)
        (host, port), *_ = await server.start()
        caller = ScriptedCaller(args.digits, route=args.route, language=args.lang, callerid=args.caller,
                                variables={Var.CONTACT_ID: args.contact_id or ""}, then=args.then)
        try:
            log = await caller.call(host, port)
        finally:
            await server.stop()
            await db.dispose()
    menus = runtime.engine.menus
    print(f"dasan call: route {args.route}, language {args.lang}, keys {args.digits!r}")
    for heard, language_then in zip(log.heard, log.heard_language, strict=True):
        name = heard.rsplit("/", 1)[-1]
        first = heard.split("/", 1)[0]
        said_in = first if first in menus.languages and heard.count("/") == 2 else language_then
        text = menus.text(name, said_in) if name in menus.prompts else ""
        print(f"  ♪ {heard}" + (f"  「{text}」" if text else ""))
    for call in calls:
        print(f"  path: {' > '.join(call.path)}")
        for said in call.said:
            print(f"  lookup: {said}")
    shown = (Var.LANG, Var.TOPIC, Var.QUEUE, Var.IVR_RESULT, Var.NIGHT_ROUTE, Var.CONTACT_ID)
    print("  variables: " + ", ".join(f"{k}={log.variables[k]}" for k in shown if k in log.variables))
    print(f"  ends: {ending(log.variables, log.hung_up)}")
    return 0


def ending(variables: dict[str, str], hung_up: bool) -> str:
    """The one line saying how the call ended: the IVR's decision, else the caller's hang-up,
    else what the dialplan does without a decision."""
    decisions: dict[str, str] = {IvrResult.QUEUE: f"queue {variables.get(Var.QUEUE)} / 상담 대기열",
                                 IvrResult.HANGUP: "IVR finished the call / IVR이 통화를 마쳤습니다",
                                 IvrResult.NIGHT: f"night route {variables.get(Var.NIGHT_ROUTE)} / 야간 안내"}
    where = decisions.get(variables.get(Var.IVR_RESULT, ""))
    if where is not None:
        return where + (" (then the caller hung up / 이후 발신자가 끊음)" if hung_up else "")
    if hung_up:
        return "caller hung up before a decision / 결정 전에 발신자가 전화를 끊었습니다"
    return "no decision: the dialplan sends the caller to the default queue / 기본 대기열로 연결"


def _agi(args: argparse.Namespace) -> int:
    from ivr import up

    settings = settings_from(args)
    if args.port is not None:
        settings.agi.port = args.port
    try:
        asyncio.run(up.run(settings, only=["agi"]))
    except KeyboardInterrupt:
        pass
    return 0


def _prompts(args: argparse.Namespace) -> int:
    from ivr import prompts
    from ivr.engine.menu import load_menus
    from ivr.engine.runtime import MENU_FILE

    settings = settings_from(args)
    menus = load_menus(settings.agi.menus_dir / MENU_FILE)
    sounds = Path(args.sounds_dir) if args.sounds_dir else settings.asterisk.sounds_dir
    if args.prompts_command == "synth":
        languages = args.lang or None
        try:
            report = asyncio.run(prompts.synthesize(menus, sounds, languages, force=args.force))
        except (RuntimeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for warning in report.warnings:
            print(f"note: {warning}")
        print(f"synthesized {len(report.written)} placeholder prompts into {sounds} "
              f"(kept {len(report.kept)} existing) / 임시 안내 음성 {len(report.written)}개 생성")
    check = prompts.check(menus, sounds)
    for item in check.missing:
        print(f"missing: {item.language}/{menus.sound_folder}/{item.prompt}  「{item.text}」")
    print(f"prompts in {sounds}: {len(check.recorded)} recorded, {len(check.placeholders)} placeholders, "
          f"{len(check.missing)} missing / 녹음 {len(check.recorded)}, 임시 {len(check.placeholders)}, "
          f"없음 {len(check.missing)}")
    return 1 if check.missing else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    call = sub.add_parser("call", help="walk the IVR menus without a phone / 전화 없이 메뉴 시험")
    call.add_argument("--lang", default="ko", help="the channel language the dialplan set (default ko)")
    call.add_argument("--digits", default="", help='keys, one token per prompt: "9 1", T timeout, H hang up')
    call.add_argument("--caller", default="01012345678", help="caller number (agi_callerid)")
    call.add_argument("--route", default="main", choices=["main", "survey", "callback"])
    call.add_argument("--contact-id", default="", help=f"{Var.CONTACT_ID} for the survey route")
    call.add_argument("--at", help="pretend the call comes at this local time (2026-11-25T23:30)")
    call.add_argument("--then", default="hangup", choices=["hangup", "timeout"],
                      help="when the keys run out: hang up, or let every prompt time out")
    call.add_argument("--record", action="store_true", help="write the contact to the configured database")
    call.set_defaults(func=_call)

    agi = sub.add_parser("agi", help="serve FastAGI only (the IVR) / FastAGI 서버만 실행")
    agi.add_argument("--port", type=int, help="override agi.port")
    agi.set_defaults(func=_agi)

    prompts = sub.add_parser("prompts", help="IVR prompt files / 안내 음성 파일")
    psub = prompts.add_subparsers(dest="prompts_command", required=True)
    synth = psub.add_parser("synth", help="synthesize placeholders (espeak-ng) for missing prompts")
    synth.add_argument("--lang", action="append", help="only this language (repeatable)")
    synth.add_argument("--force", action="store_true", help="replace recordings too")
    synth.add_argument("--sounds-dir", help="default: asterisk.sounds_dir")
    synth.set_defaults(func=_prompts)
    chk = psub.add_parser("check", help="report prompts with no sound file")
    chk.add_argument("--sounds-dir", help="default: asterisk.sounds_dir")
    chk.set_defaults(func=_prompts)
