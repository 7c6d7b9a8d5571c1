"""Writing articles: checked input, a revision per save, drafts from a past contact, usage.

Every save (create or edit) stores the whole article as a new ``ArticleRevision``, so the
history shows who changed what and any revision can be read back. Inserting an article into a
reply fills its variables from the contact and counts one use.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import sitetime
from ivr.db.models import Category, Citizen, Contact, TranscriptSegment, utcnow
from ivr.knowledge.models import Article, ArticleRevision
from ivr.knowledge.text import compact, fill, unknown_variables

KEY = r"^[a-z0-9][a-z0-9_-]{0,79}$"  # also the IVR's sound name (ivr.engine.menu.ARTICLE_KEY)
CHANNELS = ("voice", "sms", "mms", "chat", "sns", "video", "web_voice", "ivr")
MAX_BODY = 5000
MAX_TITLE = 200


class ArticleError(ValueError):
    """Input an article cannot be saved with; the message names the field."""


class ArticleText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    body: str = Field(min_length=1, max_length=MAX_BODY)


class ArticleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=KEY)
    texts: dict[Annotated[str, Field(pattern=r"^[a-z]{2,3}$")], ArticleText]
    tags: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(default_factory=list, max_length=20)
    channels: list[str] = Field(default_factory=list)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    owner: str | None = Field(None, min_length=1, max_length=80)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):  # PostgreSQL text cannot hold NUL: a clear 400, not a database error
            raise ValueError("a text contains a NUL character / 허용되지 않는 문자가 있습니다")
        return value

    @field_validator("valid_from", "valid_to", mode="before")
    @classmethod
    def _day(cls, value: Any, info: ValidationInfo) -> Any:
        # A plain date is a site day: valid from its start, valid to its end (the next day's start).
        if isinstance(value, str) and len(value) == 10:
            try:
                day = date.fromisoformat(value)
            except ValueError:
                return value  # the datetime check says what is wrong
            start = datetime.combine(day, time(), sitetime.zone())
            return start + timedelta(days=1) if info.field_name == "valid_to" else start
        return value

    @model_validator(mode="after")
    def _check(self) -> ArticleInput:
        if "ko" not in self.texts:
            raise ValueError("texts: a Korean text (ko) is required / 한국어 본문이 필요합니다")
        wrong = [c for c in self.channels if c not in CHANNELS]
        if wrong:
            raise ValueError(f"channels: unknown {', '.join(wrong)} (one of {', '.join(CHANNELS)})")
        for lang, t in self.texts.items():
            unknown = unknown_variables(t.title + " " + t.body)
            if unknown:
                raise ValueError(f"texts.{lang}: unknown variable {{{unknown[0]}}} "
                                 "(known: {tracking_number}, {name}, {phone}, {queue})")
        for name in ("valid_from", "valid_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:  # a naive time is the site's clock
                setattr(self, name, value.replace(tzinfo=sitetime.zone()))
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to: must be after valid_from")
        return self


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def parse(body: dict[str, Any]) -> ArticleInput:
    """A draft (``draft_from_contact``) as an article; a request body is read with
    ``ivr.web.bodies.read_model(request, ArticleInput)`` instead."""
    try:
        return ArticleInput.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ArticleError(f"{where}: {first['msg']}" if where else str(first["msg"])) from None


def search_text_of(data: ArticleInput) -> str:
    parts = [p for t in data.texts.values() for p in (t.title, t.body)] + data.tags + [data.key]
    return compact("\n".join(parts))


def snapshot(article: Article) -> dict[str, Any]:
    return {"key": article.key, "texts": article.texts, "tags": article.tags, "channels": article.channels,
            "valid_from": article.valid_from.isoformat() if article.valid_from else None,
            "valid_to": article.valid_to.isoformat() if article.valid_to else None, "owner": article.owner}


async def save(session: AsyncSession, data: ArticleInput, author: str, article: Article | None = None,
               source_contact_id: int | None = None) -> Article:
    """Create (``article`` None) or change an article and add its revision; ``ArticleError`` on a taken key."""
    clash = (await session.execute(select(Article.id).where(Article.key == data.key))).scalar_one_or_none()
    if clash is not None and (article is None or clash != article.id):
        raise ArticleError(f"key: {data.key!r} is taken / 이미 있는 키입니다")
    if article is None:
        article = Article(owner=data.owner or author, revision=0, usage_count=0, source_contact_id=source_contact_id)
        session.add(article)
    article.key = data.key
    article.texts = {lang: t.model_dump() for lang, t in data.texts.items()}
    article.tags, article.channels = list(data.tags), list(data.channels)
    article.valid_from, article.valid_to = data.valid_from, data.valid_to
    if data.owner:
        article.owner = data.owner
    article.search_text = search_text_of(data)
    article.revision += 1
    article.updated_at = utcnow()
    await session.flush()
    session.add(ArticleRevision(article_id=article.id, revision=article.revision, author=author,
                                content=snapshot(article)))
    return article


async def draft_from_contact(session: AsyncSession, contact_id: int) -> dict[str, Any] | None:
    """An article's fields from a past contact: its category as title, its notes (or transcript) as body."""
    contact = await session.get(Contact, contact_id)
    if contact is None:
        return None
    category = await session.get(Category, contact.category_id) if contact.category_id else None
    body = contact.notes.strip()
    if not body:
        lines = (await session.execute(select(TranscriptSegment.text).where(TranscriptSegment.contact_id == contact_id)
                                       .order_by(TranscriptSegment.start))).scalars()
        body = "\n".join(lines).strip()
    if category is None and contact.topic:  # a menu's topic code, named like a category
        category = (await session.execute(select(Category).where(Category.code == contact.topic))).scalar_one_or_none()
    # The title is Korean: the category's name, else the first line of the body (a topic code
    # such as "transport" is a tag, not a Korean title).
    first_line = body.splitlines()[0].strip()[:MAX_TITLE] if body else ""
    title = (category.name_ko if category else None) or first_line or f"문의 {contact_id}"
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return {"key": f"contact-{contact_id}-{stamp}", "texts": {"ko": {"title": title, "body": body[:MAX_BODY] or title}},
            "tags": [contact.topic] if contact.topic else [], "channels": []}


async def values_for(session: AsyncSession, contact_id: int) -> dict[str, str | None]:
    """The variables' values for one contact (``None`` where the contact has none)."""
    contact = await session.get(Contact, contact_id)
    if contact is None:
        return {}
    citizen = await session.get(Citizen, contact.citizen_id) if contact.citizen_id else None
    return {"tracking_number": contact.tracking_number, "name": citizen.display_name if citizen else None,
            "phone": citizen.identity if citizen and citizen.identity_kind == "phone" else None,
            "queue": contact.queue}


def text_in(article: Article, language: str) -> dict[str, str]:
    """The article's text in ``language``, Korean when it has none in that language."""
    texts = article.texts
    return dict(texts.get(language) or texts["ko"])


async def use(session: AsyncSession, article: Article, language: str,
              values: dict[str, str | None]) -> tuple[str, list[str], int]:
    """The body filled in for a reply, its unfilled variables and the new usage count; counts one
    use (one UPDATE: concurrent uses all count)."""
    count = (await session.execute(update(Article).where(Article.id == article.id)
                                   .values(usage_count=Article.usage_count + 1).returning(Article.usage_count)
                                   .execution_options(synchronize_session=False))).scalar_one()
    text, missing = fill(text_in(article, language)["body"], values)
    return text, missing, int(count)


async def by_key(session: AsyncSession, key: str, channel: str, now: datetime | None = None) -> Article | None:
    """The article named ``key`` if it is valid now and meant for ``channel`` (IVR, SMS auto-replies)."""
    article = (await session.execute(select(Article).where(Article.key == key))).scalar_one_or_none()
    now = now or datetime.now(UTC)
    if article is None or (article.channels and channel not in article.channels):
        return None
    start, end = article.valid_from, article.valid_to
    if start is not None and (start if start.tzinfo else start.replace(tzinfo=UTC)) > now:
        return None
    if end is not None and (end if end.tzinfo else end.replace(tzinfo=UTC)) <= now:
        return None
    return article
