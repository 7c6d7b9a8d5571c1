"""OpenAPI description of the console's JSON endpoints (merged into /openapi.json)."""

from __future__ import annotations

from typing import Any

OBJ = {"type": "object"}


def _op(summary: str, op_id: str, roles: str, params: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, ok: str = "200", extra: dict[str, str] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": "ok", "content": {"application/json": {"schema": OBJ}}},
                                 "401": {"description": "sign in first"},
                                 "403": {"description": f"role not allowed (allowed: {roles}) or CSRF token missing"}}
    for status, text in (extra or {}).items():
        responses[status] = {"description": text}
    op: dict[str, Any] = {"summary": summary, "operationId": op_id, "tags": ["console"],
                          "security": [{"session": []}], "parameters": params or [], "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _q(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
FILE = _q("file", {"type": "string", "description": "queues | agents | menu:<file>.yaml"}, True)
AGENT = "agent, supervisor, admin"
READER = "reviewer, supervisor, admin"
ADMIN = "supervisor, admin"
SCORES = {"type": "object", "required": ["greeting", "accuracy", "empathy", "resolution"],
          "properties": {k: {"type": "integer", "minimum": 1, "maximum": 5}
                         for k in ("greeting", "accuracy", "empathy", "resolution")}}

TEXT = {"type": "object", "required": ["title", "body"], "properties": {
    "title": {"type": "string", "minLength": 1, "maxLength": 200}, "body": {"type": "string", "minLength": 1, "maxLength": 5000}}}
ARTICLE = {"type": "object", "required": ["key", "texts"], "properties": {
    "key": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,79}$"},
    "texts": {"type": "object", "required": ["ko"], "additionalProperties": TEXT,
              "description": "language -> {title, body}; variables {tracking_number} {name} {phone} {queue}"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 20},
    "channels": {"type": "array", "items": {"enum": ["voice", "sms", "mms", "chat", "sns", "video", "web_voice", "ivr"]}},
    "valid_from": {"type": ["string", "null"], "format": "date-time"},
    "valid_to": {"type": ["string", "null"], "format": "date-time"}, "owner": {"type": ["string", "null"]}}}
PERIOD = [_q("from", {"type": "string", "format": "date"}, True), _q("to", {"type": "string", "format": "date"}, True)]
KNOWLEDGE_PATHS: dict[str, Any] = {
    "/api/console/kb/articles": {
        "get": _op("Knowledge-base articles with every word (Korean spacing and particles tolerated)", "findArticles",
                   AGENT, [_q("q", {"type": "string"}), _q("channel", {"type": "string"}), _q("all", {"enum": ["1"]})],
                   extra={"400": "more than 8 words, a word over 64 characters, or an unknown channel",
                          "422": "the search ran out of its time limit"}),
        "post": _op("A new article (revision 1)", "createArticle", ADMIN, body=ARTICLE, ok="201",
                    extra={"400": "bad field", "409": "key taken"})},
    "/api/console/kb/articles/{id}": {
        "get": _op("An article and its revisions", "getArticle", AGENT, [ID], extra={"404": "no such article"}),
        "put": _op("Change an article (a new revision)", "updateArticle", ADMIN, [ID], body=ARTICLE,
                   extra={"400": "bad field", "404": "no such article", "409": "key taken"})},
    "/api/console/kb/articles/{id}/use": {"post": _op(
        "An article's body filled in from a contact for a reply; counts one use", "useArticle", AGENT, [ID],
        body={"type": "object", "properties": {"contact_id": {"type": "integer"}, "chat_id": {"type": "integer"},
                                               "language": {"type": "string"}}},
        extra={"400": "bad id", "404": "no such article, contact or chat"})},
    "/api/console/kb/suggest": {"post": _op(
        "Published articles matching the live transcript so far, in the agent's language", "suggestArticles",
        AGENT, body={"type": "object", "required": ["text"], "properties": {
            "text": {"type": "string", "description": "the running transcript (its last 2000 characters are used)"},
            "channel": {"enum": ["voice", "sms", "mms", "chat", "sns", "video", "web_voice", "ivr"]}}},
        extra={"400": "text missing or not a string, or an unknown channel",
               "422": "the search ran out of its time limit"})},
    "/api/console/kb/from-contact/{id}": {"post": _op(
        "A new article drafted from a past contact (notes or transcript)", "articleFromContact", ADMIN, [ID], ok="201",
        extra={"404": "no such contact"})},
    "/api/console/reports/contacts.csv": {"get": {**_op(
        "Every contact of a period, one CSV row each (streamed)", "exportContacts", ADMIN, PERIOD,
        extra={"400": "bad period"}), "responses": {
            "200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
            "400": {"description": "bad period"}, "401": {"description": "sign in first"},
            "403": {"description": "role not allowed"}}}},
    "/api/console/reports/summary": {"get": _op(
        "Service level, abandonment, wait, talk, satisfaction per hour/day, queue, channel, language",
        "reportSummary", ADMIN, [*PERIOD, _q("period", {"enum": ["hour", "day"]})], extra={"400": "bad period"})},
}
QA_READER = "reviewer, supervisor, admin"
QUALITY_PATHS: dict[str, Any] = {
    "/api/console/qa/scorecards": {"get": _op("The QA scorecards (data)", "qaScorecards", "any console role")},
    "/api/console/qa/samples": {
        "get": _op("Drawn contacts and who scored them", "qaSamples", QA_READER),
        "post": _op("Draw contacts at random per agent for a period", "qaDraw", QA_READER, ok="201",
                    body={"type": "object", "required": ["from", "to", "per_agent", "scorecard"], "properties": {
                        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                        "per_agent": {"type": "integer", "minimum": 1, "maximum": 50},
                        "scorecard": {"type": "string"}}},
                    extra={"400": "bad field"})},
    "/api/console/qa/samples/{id}": {"get": _op(
        "A sample, its scorecard and (once scored by the caller) the calibration", "qaSample", QA_READER, [ID],
        extra={"404": "no such sample"})},
    "/api/console/qa/samples/{id}/evaluations": {"post": _op(
        "Score a sampled contact (every criterion 0..max)", "qaScore", QA_READER, [ID], ok="201",
        body={"type": "object", "required": ["scores"], "properties": {
            "scores": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            "comment": {"type": "string", "maxLength": 5000}}},
        extra={"400": "bad scores", "404": "no such sample", "409": "scored already"})},
    "/api/console/qa/mine": {"get": _op("Evaluations of my contacts", "qaMine", AGENT)},
    "/api/console/qa/evaluations/{id}/ack": {"post": _op(
        "Acknowledge an evaluation of my contact", "qaAcknowledge", AGENT, [ID],
        body={"type": "object", "properties": {"comment": {"type": "string", "maxLength": 2000}}},
        extra={"403": "not the evaluated agent", "404": "no such evaluation", "409": "acknowledged already"})},
    "/api/console/qa/export.csv": {"get": {**_op(
        "QA evaluations of a period as CSV", "qaExport", QA_READER, PERIOD), "responses": {
            "200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
            "400": {"description": "bad period"}, "401": {"description": "sign in first"},
            "403": {"description": "role not allowed"}}}},
}

PATHS: dict[str, Any] = {
    "/api/console/language": {"post": _op(
        "Set my language (ko/en)", "setLanguage", "any signed-in user",
        body={"type": "object", "required": ["language"], "properties": {"language": {"enum": ["ko", "en"]}}},
        extra={"400": "unknown language"})},
    "/api/console/agent/state": {
        "get": _op("My queue state as the AMI bridge last recorded it", "getAgentState", AGENT),
        "post": _op("Ask the AMI bridge to log me in/out or pause/unpause (agent.commands job)",
                    "postAgentState", AGENT, ok="202",
                    extra={"400": "unknown action, or a reason with a line break (it would reach AMI)"},
                    body={"type": "object", "required": ["action"], "properties": {
                        "action": {"enum": ["login", "logout", "pause", "unpause"]},
                        "reason": {"type": "string", "maxLength": 200, "pattern": "^[^\\r\\n\\x00]*$"}}})},
    "/api/console/contacts/{id}": {"get": _op(
        "Screen-pop: a contact, its citizen and their earlier inquiries", "getConsoleContact", AGENT, [ID],
        extra={"404": "no such contact"})},
    "/api/console/contacts/{id}/record": {"post": _op(
        "Save the counselling record (category, notes, resolution)", "saveRecord", AGENT, [ID],
        body={"type": "object", "properties": {
            "category": {"type": ["string", "null"]}, "notes": {"type": "string", "maxLength": 20000},
            "resolution": {"enum": ["answered", "transferred", "callback", "unresolved", None]}}},
        extra={"400": "bad field", "404": "no such contact"})},
    "/api/console/inbox": {"get": _op("Open SMS/MMS/SNS contacts with their messages", "inbox", AGENT)},
    "/api/console/kb": {"get": _op("Knowledge search over earlier records and transcripts", "knowledgeSearch",
                                   AGENT, [_q("q", {"type": "string", "minLength": 1}, True)],
                                   extra={"400": "empty query, more than 8 different words or a word over 64 characters",
                                          "422": "the search ran out of its time limit"})},
    "/api/console/admin/file": {
        "get": _op("A configuration file and its version", "getConfigFile", ADMIN, [FILE],
                   extra={"404": "unknown file"}),
        "post": _op("Validate, write, record and apply a configuration file", "saveConfigFile", ADMIN, [FILE],
                    body={"type": "object", "required": ["text"], "properties": {
                        "text": {"type": "string"}, "sha256": {"type": "string"}, "comment": {"type": "string"}}},
                    extra={"404": "unknown file", "409": "changed since opened", "422": "invalid"})},
    "/api/console/admin/validate": {"post": _op(
        "Check a configuration file without writing it", "validateConfigFile", ADMIN, [FILE],
        body={"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        extra={"404": "unknown file"})},
    "/api/console/admin/history": {"get": _op("Configuration change history", "configHistory", ADMIN)},
    "/api/console/admin/prompts": {"post": {**_op(
        "Upload a prompt recording (converted to 8 kHz mono WAV)", "uploadPrompt", ADMIN, ok="201",
        extra={"400": "bad name/language/file", "422": "not audio"}),
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["name", "language", "file"], "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
                "language": {"type": "string", "pattern": "^[a-z]{2,3}$",
                             "description": "a caller language of languages.yaml"},
                "file": {"type": "string", "format": "binary"}}}}}}}},
    "/api/console/recordings": {"get": _op(
        "Find recordings by date, queue, agent, category, satisfaction, transcript words", "findRecordings",
        READER, [_q("from", {"type": "string", "format": "date"}), _q("to", {"type": "string", "format": "date"}),
                 _q("queue", {"type": "string"}), _q("agent", {"type": "string"}),
                 _q("category", {"type": "string"}), _q("satisfaction", {"type": "integer", "minimum": 1, "maximum": 5}),
                 _q("q", {"type": "string"})], extra={"400": "bad filter"})},
    "/api/console/recordings/{id}/peaks": {"get": _op(
        "Waveform peaks (0..1) of a recording", "recordingPeaks", READER,
        [ID, _q("n", {"type": "integer", "minimum": 10, "maximum": 4000})],
        extra={"404": "no such recording or file", "410": "purged"})},
    "/api/console/recordings/{id}/reviews": {
        "get": _op("Quality reviews of a recording", "listReviews", READER, [ID]),
        "post": _op("Score a recorded call (quality review)", "saveReview", READER, [ID], ok="201",
                    body={"type": "object", "required": ["scores"], "properties": {
                        "scores": SCORES, "comment": {"type": "string", "maxLength": 5000}}},
                    extra={"400": "bad scores", "404": "no such recording"})},
    "/api/console/wallboard": {"get": _op("Live metrics and today's contacts by hour", "wallboard",
                                          "agent, supervisor, reviewer, admin")},
    "/api/console/calls": {"get": _op("Live calls: caller, agent, queue, since, menu path; the phone system's state",
                                      "liveCalls", ADMIN)},
    "/api/console/calls/supervise": {"post": _op(
        "Listen, whisper or barge on a live call (rings the supervisor's phone into ChanSpy; audited)",
        "superviseCall", ADMIN, ok="202",
        body={"type": "object", "required": ["call", "mode"], "properties": {
            "call": {"type": "string", "minLength": 1, "maxLength": 80},
            "mode": {"type": "string", "enum": ["listen", "whisper", "barge"]}}},
        extra={"400": "bad mode or call", "409": "the call is not talking to an agent, or you have no phone",
               "503": "the phone system is down"})},
    **KNOWLEDGE_PATHS,
    **QUALITY_PATHS,
}
