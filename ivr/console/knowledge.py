"""Knowledge-base pages and API: supervisors write articles (or draft one from a past contact),
agents search them beside the live contact and insert one, filled in, into a reply.

The older ``/api/console/kb`` (earlier records and transcripts) stays in ``ivr.console.agent``;
the agent page shows both.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from sqlalchemy import select

from ivr.console.http import audit_request, int_match, iso, username
from ivr.console.render import ctx_of, language_of, render
from ivr.db.models import Contact
from ivr.engine.menu import load_menus
from ivr.engine.runtime import MENU_FILE
from ivr.knowledge import store
from ivr.knowledge.models import Article, ArticleRevision
from ivr.knowledge.search import search_articles
from ivr.knowledge.speech import silence, speak
from ivr.knowledge.store import CHANNELS, ArticleError, ArticleInput
from ivr.knowledge.suggest import MAX_TEXT, suggest_articles
from ivr.messaging.models import ChatConversation
from ivr.search import SearchError
from ivr.web.access import contact_access, refused
from ivr.web.auth import current_user, requires
from ivr.web.bodies import Body, one_of, read_model
from ivr.web.errors import json_error
from ivr.yamlfile import DataError

WRITERS = ("supervisor",)  # and admin, as everywhere


def article_json(a: Article) -> dict[str, Any]:
    return {"id": a.id, "key": a.key, "texts": a.texts, "tags": a.tags, "channels": a.channels,
            "valid_from": iso(a.valid_from), "valid_to": iso(a.valid_to), "owner": a.owner,
            "usage_count": a.usage_count, "revision": a.revision, "updated_at": iso(a.updated_at),
            "source_contact_id": a.source_contact_id}


@requires(*WRITERS)
async def knowledge_page(request: web.Request) -> web.Response:
    return render(request, "knowledge.html", channels=CHANNELS)


@requires("agent", "supervisor")
async def find_articles(request: web.Request) -> web.Response:
    """GET /api/console/kb/articles?q&channel&all: valid articles with every word (all=1: also expired ones)."""
    q = request.query
    channel = q.get("channel") or None
    if channel is not None and channel not in CHANNELS:
        raise json_error(400, f"channel: one of {', '.join(CHANNELS)}")
    user = current_user(request)
    every = q.get("all") == "1" and user is not None and user.role in ("supervisor", "admin")
    async with ctx_of(request).db.session() as session:
        try:
            found = await search_articles(session, q.get("q", "").strip(), channel=channel, limit=30,
                                          include_invalid=every)
        except SearchError as exc:
            raise json_error(exc.status, str(exc)) from None
    return web.json_response({"q": q.get("q", ""), "items": [article_json(a) for a in found]})


@requires("agent", "supervisor")
async def get_article(request: web.Request) -> web.Response:
    """GET /api/console/kb/articles/{id}: the article and its revision history."""
    article_id = int_match(request)
    async with ctx_of(request).db.session() as session:
        article = await session.get(Article, article_id)
        if article is None:
            raise json_error(404, "no such article / 문서가 없습니다")
        revisions = list((await session.execute(select(ArticleRevision).where(
            ArticleRevision.article_id == article_id).order_by(ArticleRevision.revision.desc()))).scalars())
    return web.json_response({**article_json(article), "revisions": [
        {"revision": r.revision, "at": iso(r.at), "author": r.author, "content": r.content} for r in revisions]})


async def _save(request: web.Request, article_id: int | None) -> web.Response:
    data = await read_model(request, ArticleInput)
    async with ctx_of(request).db.transaction() as session:
        article = None
        if article_id is not None:
            article = await session.get(Article, article_id)
            if article is None:
                raise json_error(404, "no such article / 문서가 없습니다")
        try:
            article = await store.save(session, data, username(request), article)
        except ArticleError as exc:
            raise json_error(409, str(exc)) from None
        result = article_json(article)
    result["spoken"] = await _voice(request, data.key, result["texts"], "ivr" in data.channels)
    await audit_request(request, "kb_article_saved", f"kb:{result['id']}", revision=result["revision"])
    return web.json_response(result, status=201 if article_id is None else 200)


async def _voice(request: web.Request, key: str, texts: dict[str, Any], for_ivr: bool) -> dict[str, Any]:
    """The IVR's sound of the article made (or removed when it is no longer for the IVR)."""
    settings = ctx_of(request).settings
    try:
        menus = load_menus(settings.agi.menus_dir / MENU_FILE)
    except DataError as exc:
        return {"languages": [], "error": f"menus: {exc.problems[0]}"}
    languages = tuple(menus.languages)
    if not for_ivr:
        silence(key, settings.asterisk.sounds_dir, menus.sound_folder, languages)
        return {"languages": []}
    try:
        return {"languages": await speak(texts, key, settings.asterisk.sounds_dir, menus.sound_folder, languages)}
    except (RuntimeError, OSError) as exc:  # espeak-ng or sox missing or failing: the article is saved anyway
        return {"languages": [], "error": str(exc)[:300]}


@requires(*WRITERS)
async def create_article(request: web.Request) -> web.Response:
    """POST /api/console/kb/articles: a new article (revision 1)."""
    return await _save(request, None)


@requires(*WRITERS)
async def update_article(request: web.Request) -> web.Response:
    """PUT /api/console/kb/articles/{id}: the article changed (a new revision)."""
    return await _save(request, int_match(request))


@requires(*WRITERS)
async def article_from_contact(request: web.Request) -> web.Response:
    """POST /api/console/kb/from-contact/{id}: a new article drafted from a past contact (one click)."""
    contact_id = int_match(request)
    ctx = ctx_of(request)
    async with ctx.db.transaction() as session:
        draft = await store.draft_from_contact(session, contact_id)
        if draft is None:
            raise json_error(404, "no such contact / 문의가 없습니다")
        article = await store.save(session, store.parse(draft), username(request), source_contact_id=contact_id)
        result = article_json(article)
    await audit_request(request, "kb_article_from_contact", f"kb:{result['id']}", contact=contact_id)
    return web.json_response(result, status=201)


class UseIn(Body):
    contact_id: int | None = None  # the contact whose values fill the text
    chat_id: int | None = None  # or the web chat's
    language: str | None = None  # else the contact's


@requires("agent", "supervisor")
async def use_article(request: web.Request) -> web.Response:
    """POST /api/console/kb/articles/{id}/use {"contact_id"|"chat_id", "language"?}: the body filled in
    from that contact (tracking number, name, ...) for a reply; counts one use."""
    article_id = int_match(request)
    body = await read_model(request, UseIn)
    ctx, user = ctx_of(request), current_user(request)
    assert user is not None
    contact_id, chat_id = body.contact_id, body.chat_id
    async with ctx.db.transaction() as session:
        article = await session.get(Article, article_id)
        if article is None:
            raise json_error(404, "no such article / 문서가 없습니다")
        if chat_id is not None:
            chat = await session.get(ChatConversation, chat_id)
            if chat is None:
                raise json_error(404, "no such chat / 채팅이 없습니다")
            contact_id = chat.contact_id
        values: dict[str, str | None] = {}
        language = body.language
        if contact_id is not None:
            contact = await session.get(Contact, contact_id)
            if contact is None:
                raise json_error(404, "no such contact / 문의가 없습니다")
            if not (await contact_access(ctx, session, user, contact)).allowed:
                raise refused()
            values = await store.values_for(session, contact_id)
            language = language or contact.language
        text, missing, usage = await store.use(session, article, str(language or "ko"), values)
    await audit_request(request, "kb_article_used", f"kb:{article_id}", contact=contact_id)
    return web.json_response({"id": article_id, "text": text, "missing": missing, "usage_count": usage})


class SuggestIn(Body):
    text: str  # the live transcript so far (its last MAX_TEXT characters are used)
    channel: Annotated[str, one_of(CHANNELS)] = "voice"


@requires("agent", "supervisor")
async def suggest(request: web.Request) -> web.Response:
    """POST /api/console/kb/suggest {"text", "channel"?}: published articles matching what is being
    said (the agent page sends its live transcript as it runs), in the agent's language."""
    body = await read_model(request, SuggestIn)
    language = language_of(request)
    async with ctx_of(request).db.session() as session:
        try:
            found = await suggest_articles(session, body.text[-MAX_TEXT:].replace("\x00", ""), channel=body.channel)
        except SearchError as exc:
            raise json_error(exc.status, str(exc)) from None
    return web.json_response({"language": language, "items": [
        {"id": s.article.id, "key": s.article.key, "matched": s.matched, "usage_count": s.article.usage_count,
         **store.text_in(s.article, language)} for s in found]})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/console/knowledge", knowledge_page)
    r.add_get("/api/console/kb/articles", find_articles)
    r.add_post("/api/console/kb/articles", create_article)
    r.add_get("/api/console/kb/articles/{id}", get_article)
    r.add_put("/api/console/kb/articles/{id}", update_article)
    r.add_post("/api/console/kb/articles/{id}/use", use_article)
    r.add_post("/api/console/kb/suggest", suggest)
    r.add_post("/api/console/kb/from-contact/{id}", article_from_contact)
