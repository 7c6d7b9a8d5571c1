"""Puts a minted credential into Asterisk: the slot's auth object and its expiry, in astdb.

res_sorcery_astdb reads ``<family>/<id>`` as a JSON object of the auth's fields on every
lookup (no cache), so the password is live as soon as ``DBPut`` returns; nothing is reloaded.
"""

from __future__ import annotations

import json

from ivr.asterisk.apply import AmiSession, ApplyError
from ivr.config import Settings
from ivr.webrtc.credentials import Credential
from ivr.webrtc.slots import AUTH_FAMILY, EXPIRY_FAMILY


class PushError(RuntimeError):
    pass


def auth_object(credential: Credential) -> str:
    return json.dumps({"auth_type": "userpass", "username": credential.username,
                       "password": credential.password}, separators=(",", ":"))


async def push_credential(settings: Settings, credential: Credential) -> None:
    ami = settings.ami
    try:
        async with AmiSession(ami.host, ami.port, ami.username, ami.secret, settings.asterisk.ami_timeout) as session:
            for family, value in ((EXPIRY_FAMILY, str(int(credential.expires_at))),
                                  (AUTH_FAMILY, auth_object(credential))):
                reply = await session.action({"Action": "DBPut", "Family": family, "Key": credential.username,
                                              "Val": value})
                if reply.get("Response") != "Success":
                    raise PushError(f"Asterisk refused DBPut {family}: {reply.get('Message', '')}")
    except ApplyError as exc:
        raise PushError(str(exc)) from exc
