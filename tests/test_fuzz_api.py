"""Fuzzing the HTTP API from its own OpenAPI description (schemathesis).

``dasan up --only web`` runs in a subprocess on a temporary SQLite database; schemathesis reads
``/openapi.json`` and, for every documented operation, sends generated requests (valid and
invalid by the schema) as a signed-in admin with the CSRF token. No request may make the
server fail (5xx), and the server must still answer afterwards. Bounded: a few examples per
operation.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error
from test_fault_kit import ROOT, Dasan

from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.web.auth import SessionUser, create_user, encode_session

SECRET_KEY = "fuzz-secret-key-0123456789-abcdefghijklmnop"  # 32+ characters (ivr.site_secrets)
EXAMPLES = 5


async def _admin(url: str) -> SessionUser:
    ctx = AppContext(Settings(), Database(url), MemoryBus())
    user = await create_user(ctx, "fuzz-admin", "fuzz-password-1", "admin")
    await ctx.db.dispose()
    return SessionUser(user.id, user.username, "admin", "ko", "fuzz-csrf-token", time.time() + 3600,
                       user.session_version)


def test_api_survives_generated_requests(settings: Settings, tmp_path: Path) -> None:
    admin = asyncio.run(_admin(settings.database_url))
    env = {"DASAN_CONFIG": "/dev/null", "DASAN__DATABASE__URL": settings.database_url, "DASAN__WEB__PORT": "0",
           "DASAN__WEB__SECRET_KEY": SECRET_KEY, "DASAN__DATA_DIR": str(tmp_path / "var"),
           "DASAN__RECORDINGS__DIR": str(tmp_path / "recordings"),
           "DASAN__ASTERISK__SOUNDS_DIR": str(tmp_path / "sounds"),
           "DASAN__ASTERISK__CONFIG_DIR": str(tmp_path / "asterisk"), "DASAN__AMI__ENABLED": "false"}
    web = Dasan(["web"], env, ROOT)
    web.start()
    try:
        base = f"http://127.0.0.1:{web.port('web')}"
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        cookies = {"dasan_session": encode_session(SECRET_KEY, admin)}
        headers = {"X-CSRF-Token": admin.csrf}
        operations = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
        assert operations, "the API describes no operation"
        failures: list[str] = []
        http = requests.Session()
        for op in operations:
            if op.path in ("/api/logout",):
                continue  # would end the session the rest of the run uses (it is a cookie: harmless)

            @hsettings(max_examples=EXAMPLES, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))
            @given(op.as_strategy())
            def run(case: schemathesis.Case) -> None:
                response = case.call(base_url=base, session=http, headers=headers, cookies=cookies, timeout=30)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failure, reported together
                failures.append(f"{op.label}: {str(exc)[:600]}")
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200, "the server stopped answering"
        assert not failures, "\n\n".join(failures)
    finally:
        web.stop()


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
