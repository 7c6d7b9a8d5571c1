"""Secure by default (issue #15): no secret ships; a fresh data folder gets random ones in
<data_dir>/secrets.yaml (mode 0600); published, empty where needed or short ones are refused."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.datafolder import DEFAULT_QUEUES
from ivr.db import Database
from ivr.messaging.providers.generic import generic_signature, verify_generic
from ivr.messaging.providers.twilio import twilio_signature, verify_twilio
from ivr.queues import load_queues
from ivr.site_secrets import SecretError, load_secrets, secrets_file, sip_passwords
from ivr.web.app import create_app
from ivr.web.auth import SessionUser, encode_session
from tests.support.up import start_up

PROJECT = Path(__file__).resolve().parent.parent
SECRETS = (("web", "secret_key"), ("sms", "webhook_secret"), ("ami", "secret"))


def _values(settings: Settings) -> dict[str, str]:
    return {f"{s}.{k}": getattr(getattr(settings, s), k) for s, k in SECRETS}


def test_nothing_ships_a_secret() -> None:
    assert set(_values(Settings()).values()) == {""}
    example = yaml.safe_load((PROJECT / "dasan.example.yaml").read_text())
    for section, key in SECRETS:
        assert key not in (example.get(section) or {}), f"dasan.example.yaml ships {section}.{key}"
    shipped = load_queues(DEFAULT_QUEUES)
    assert shipped.agents and all(a.secret is None for a in shipped.agents)


def test_first_start_generates_private_secrets_and_later_starts_keep_them(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path / "var")
    notes = load_secrets(first)
    path = secrets_file(first)
    assert notes == [f"secrets web.secret_key, sms.webhook_secret, ami.secret generated into {path} (mode 0600)"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = _values(first)
    assert len(set(values.values())) == 3 and all(len(v) >= 40 for v in values.values())
    again = Settings(data_dir=tmp_path / "var")
    assert load_secrets(again) == [f"secrets from {path}"]
    assert _values(again) == values
    # An explicit value wins over the stored one; the others still come from the file.
    explicit = Settings(data_dir=tmp_path / "var")
    explicit.ami.secret = "a-site-chosen-ami-secret"
    load_secrets(explicit)
    assert explicit.ami.secret == "a-site-chosen-ami-secret" and explicit.web.secret_key == values["web.secret_key"]
    # SIP passwords: one per agent, generated once, kept.
    agents = load_queues(DEFAULT_QUEUES).agents
    sip = sip_passwords(first, agents)
    assert sip == sip_passwords(Settings(data_dir=tmp_path / "var"), agents) and len(set(sip.values())) == len(agents)


@pytest.mark.parametrize(("section", "key", "value", "why"), [
    ("web", "secret_key", "dev-only-change-me", "published default"),
    ("sms", "webhook_secret", "dev-only-change-me", "published default"),
    ("ami", "secret", "change-me", "published default"),
    ("web", "secret_key", "short-but-random-8c1", "shorter than 32"),
    ("ami", "secret", "s3cret", "shorter than 12"),
])
def test_published_or_short_secrets_are_refused(tmp_path: Path, section: str, key: str, value: str, why: str) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    setattr(getattr(settings, section), key, value)
    with pytest.raises(SecretError) as err:
        load_secrets(settings)
    assert f"{section}.{key}" in str(err.value) and why in str(err.value)
    assert not secrets_file(settings).exists()  # refused before anything was written


def test_twilio_needs_its_auth_token_and_a_readable_store_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    settings.sms.provider = "twilio"
    with pytest.raises(SecretError, match="Twilio auth token"):
        load_secrets(settings)
    settings = Settings(data_dir=tmp_path / "var")
    load_secrets(settings)
    secrets_file(settings).chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_secrets(Settings(data_dir=tmp_path / "var"))


def test_published_agent_passwords_are_refused(tmp_path: Path) -> None:
    agents = load_queues(DEFAULT_QUEUES).agents
    agents[0].secret = "dev-agent1001-pw"
    with pytest.raises(SecretError, match=r"kim\.minji is a published default"):
        sip_passwords(Settings(data_dir=tmp_path / "var"), agents)


def test_no_webhook_is_believed_with_an_empty_secret() -> None:
    body = b'{"from": "01012345678", "text": "hi"}'
    assert not verify_generic("", body, generic_signature("", body))
    url, params = "https://example.org/webhooks/twilio/sms", [("Body", "hi")]
    assert not verify_twilio("", [url], params, twilio_signature("", url, params))


async def test_an_app_without_a_key_signs_with_a_random_one_and_refuses_a_published_one(tmp_path: Path) -> None:
    keys = []
    for _ in range(2):
        settings = Settings(data_dir=tmp_path / "var")
        ctx = AppContext(settings, Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"), MemoryBus())
        create_app(ctx)
        keys.append(settings.web.secret_key)
        await ctx.db.dispose()
    assert keys[0] != keys[1] and all(len(k) >= 40 for k in keys)
    settings = Settings(data_dir=tmp_path / "var")
    settings.web.secret_key = "dev-only-change-me"
    ctx = AppContext(settings, Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"), MemoryBus())
    with pytest.raises(SecretError, match="published default"):
        create_app(ctx)
    await ctx.db.dispose()


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    return rest


def test_dasan_up_on_a_fresh_data_folder_generates_secrets_and_refuses_a_published_one(tmp_path: Path) -> None:
    proc, output = start_up(tmp_path, "--only", "web")
    try:
        path = tmp_path / "var" / "secrets.yaml"
        assert f"secrets web.secret_key, sms.webhook_secret, ami.secret generated into {path} (mode 0600)" in output
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        web = re.search(r"dasan: web\s+(http://\S+)", output)
        assert web, output
        # The attack of the issue: a cookie signed with the old public default is refused.
        forged = encode_session("dev-only-change-me", SessionUser(1, "admin", "admin", "ko", "x", time.time() + 3600, 0))
        request = urllib.request.Request(web.group(1) + "api/me", headers={"Cookie": f"dasan_session={forged}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        stored = path.read_text()
    finally:
        _stop(proc)
    proc, output = start_up(tmp_path, "--only", "web")
    _stop(proc)
    assert f"secrets from {path}" in output and path.read_text() == stored

    proc, output = start_up(tmp_path, "--only", "web", DASAN__WEB__SECRET_KEY="dev-only-change-me")
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, output + rest
    assert "web.secret_key is a published default" in output + rest and "ready" not in output + rest


def test_config_check_reports_secrets_and_a_missing_trunk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ivr.cli import main

    cfg = tmp_path / "dasan.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\nami:\n  secret: change-me\n")
    assert main(["--config", str(cfg), "config", "check"]) == 2
    out = capsys.readouterr()
    assert "ami.secret is a published default" in out.err
    assert "asterisk.trunk_contact is not set" in out.out
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\nasterisk:\n  trunk_contact: sip:gw.example.org\n")
    assert main(["--config", str(cfg), "config", "check"]) == 0
    out = capsys.readouterr()
    assert f"dasan up` generates them into {tmp_path / 'var' / 'secrets.yaml'}" in out.out
    assert not (tmp_path / "var" / "secrets.yaml").exists()  # a check writes nothing
