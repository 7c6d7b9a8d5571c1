"""MMS photos stored beside the contact: ``<data_dir>/media/<contact id>/<message id>-<n>.<ext>``.

Names are ours (a client's filename is never used, so no path traversal); the type is
decided by the file's magic bytes, not by what the sender claims; size and count are limited.
Files are written to a temporary name, fsync'd and renamed, so a crash leaves no half photo.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

# content type -> (extension, magic prefixes)
ALLOWED: dict[str, tuple[str, tuple[bytes, ...]]] = {
    "image/jpeg": (".jpg", (b"\xff\xd8\xff",)),
    "image/png": (".png", (b"\x89PNG\r\n\x1a\n",)),
    "image/gif": (".gif", (b"GIF87a", b"GIF89a")),
}


class MediaError(ValueError):
    """A photo that is not accepted (type or size); the message says which rule."""


def sniff(data: bytes) -> str | None:
    for content_type, (_ext, magics) in ALLOWED.items():
        if any(data.startswith(m) for m in magics):
            return content_type
    return None


def check(data: bytes, claimed: str | None, max_bytes: int) -> str:
    """The verified content type, or MediaError."""
    if len(data) > max_bytes:
        raise MediaError(f"photo is {len(data)} bytes; the limit is {max_bytes}")
    if not data:
        raise MediaError("photo is empty")
    actual = sniff(data)
    if actual is None:
        raise MediaError("only JPEG, PNG and GIF photos are accepted")
    if claimed and claimed.split(";")[0].strip().lower() not in (actual, "image/jpg" if actual == "image/jpeg" else actual):
        raise MediaError(f"photo claims {claimed} but is {actual}")
    return actual


@dataclass(frozen=True)
class StoredMedia:
    path: str  # relative to data_dir, e.g. media/12/34-1.jpg
    content_type: str
    size_bytes: int
    sha256: str


class MediaStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def absolute(self, relative: str) -> Path:
        path = (self.data_dir / relative).resolve()
        if not path.is_relative_to((self.data_dir / "media").resolve()):
            raise MediaError("media path outside the media folder")
        return path

    def save(self, contact_id: int, message_id: int, index: int, data: bytes, content_type: str) -> StoredMedia:
        ext = ALLOWED[content_type][0]
        relative = f"media/{int(contact_id)}/{int(message_id)}-{int(index)}{ext}"
        target = self.data_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".part")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return StoredMedia(relative, content_type, len(data), hashlib.sha256(data).hexdigest())

    def remove(self, relative: str) -> None:
        try:
            self.absolute(relative).unlink()
        except (FileNotFoundError, MediaError):
            pass


def media_headers(content_type: str | None) -> dict[str, str]:
    """A stored photo as exactly the image type its bytes proved (anything else is a download),
    never sniffed, and sandboxed: a PNG that is also an HTML page can never run as one."""
    safe = content_type if content_type in ALLOWED else "application/octet-stream"
    return {"Content-Type": safe, "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": "inline" if safe in ALLOWED else "attachment"}
