"""SMS keyword auto-replies from the knowledge base.

``sms.keyword_articles`` in the configuration maps a keyword to an article key; a citizen's
SMS that is just that keyword (spacing and case aside: "버스 정류장" matches "버스정류장") is
answered with the article's body in the contact's language, its variables filled in from the
contact (tracking number, the citizen's name when known). The article must be valid now and
meant for SMS (no channel list, or one with ``sms``). A citizen whose name is not known is
named by the language's ``someone`` word (languages.yaml: "{name}님" -> "고객님", never "님");
any other variable without a value is left out of the text, never sent as "{phone}". Each
reply counts one use of the article.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.knowledge import store
from ivr.knowledge.text import SPACE, VARIABLE, compact
from ivr.languages import load_languages

if TYPE_CHECKING:
    from ivr.context import AppContext


def keyword_article(keywords: dict[str, str], body: str) -> str | None:
    """The article key a message's text names, if the whole message is one configured keyword."""
    wanted = compact(body)
    for keyword, key in keywords.items():
        if compact(keyword) == wanted:
            return key
    return None


async def keyword_reply(ctx: AppContext, body: str, language: str, tracking_number: str,
                        contact_id: int | None = None) -> str | None:
    key = keyword_article(ctx.settings.sms.keyword_articles, body)
    if key is None:
        return None
    async with ctx.db.transaction() as session:
        article = await store.by_key(session, key, "sms")
        if article is None:
            return None
        values = await store.values_for(session, contact_id) if contact_id is not None else {}
        values["tracking_number"] = tracking_number or values.get("tracking_number")
        values["name"] = values.get("name") or load_languages(ctx.settings.agi.menus_dir).someone(language) or None
        text, _missing, _count = await store.use(session, article, language, values)
    return SPACE.sub(" ", VARIABLE.sub("", text)).strip() or None
