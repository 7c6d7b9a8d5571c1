"""POST /api/webcall/report: a citizen reports a problem with a photo from the /call page.

The page holds no Open311 API key; instead its one-time form token (ivr.webrtc.credentials)
must be spent, so a report cannot be replayed and each needs a fresh page. The photo is kept
only when its bytes are a JPEG, PNG or WebP image, whatever the browser claims.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from aiohttp import BodyPartReader, web

from ivr.console.render import ctx_of
from ivr.open311.formats import Open311Error
from ivr.open311.service import NewRequest, Open311
from ivr.webrtc.credentials import CredentialRefused, refusal_logged
from ivr.webrtc.state import webcall_state

MAX_PHOTO_BYTES = 5 * 1024 * 1024
FIELDS = ("token", "service_code", "description", "address_string", "lang")
MAGIC = ((b"\xff\xd8\xff", "image/jpeg", ".jpg"), (b"\x89PNG\r\n\x1a\n", "image/png", ".png"))


def image_type(head: bytes) -> tuple[str, str] | None:
    for magic, content_type, ext in MAGIC:
        if head.startswith(magic):
            return content_type, ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return None


def _refuse(status: int, message: str, token: str, reason: str = "invalid") -> web.Response:
    return web.json_response({"error": message, "reason": reason, "token": token}, status=status)


async def report(request: web.Request) -> web.Response:
    state = webcall_state(request)
    fresh = state.tokens.issue()
    if not request.content_type.startswith("multipart/"):
        return _refuse(400, "send the form as multipart/form-data", fresh)
    fields: dict[str, str] = {}
    photo: tuple[bytes, str, str] | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "photo":
            data = await part.read(decode=False)
            if not data:
                continue
            if len(data) > MAX_PHOTO_BYTES:
                return _refuse(413, f"the photo is larger than {MAX_PHOTO_BYTES // 1024 // 1024} MB", fresh)
            kind = image_type(bytes(data[:16]))
            if kind is None:
                return _refuse(415, "the photo must be a JPEG, PNG or WebP image", fresh)
            photo = (bytes(data), *kind)
        elif part.name in FIELDS:
            fields[part.name] = (await part.text())[:4000]
    address = request.remote or "?"
    try:
        await state.tokens.redeem(fields.get("token", ""))
    except CredentialRefused as exc:
        refusal_logged(exc.reason, address, f"report: {exc}")
        return _refuse(403 if exc.reason != "replayed" else 409, str(exc), fresh, exc.reason)
    ctx = ctx_of(request)
    media = None
    if photo is not None:
        folder = ctx.settings.data_dir / "open311-web"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{secrets.token_urlsafe(12)}{photo[2]}"
        path.write_bytes(photo[0])
        media = (str(Path("open311-web") / path.name), photo[1])
    new = NewRequest(service_code=fields.get("service_code", ""), description=fields.get("description"),
                     address_string=fields.get("address_string"), language=fields.get("lang"))
    try:
        async with ctx.db.transaction() as session:
            sr, _ = await Open311(ctx).create(session, new, source="web", media=media, require_attributes=False)
            number = sr.service_request_id
    except Open311Error as exc:
        if media is not None:
            (ctx.settings.data_dir / media[0]).unlink(missing_ok=True)
        return _refuse(400, str(exc), fresh)
    return web.json_response({"tracking_number": number, "token": fresh}, status=201)
