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
}
