"""OpenAPI description of the messaging sidecar's paths (merged into ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from ivr.messaging.providers.generic import GenericSms, GenericStatus, SnsIn

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_json("Error")}


def _pydantic(model: Any, name: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template=REF)
    out = {name: schema}
    for sub, sub_schema in schema.pop("$defs", {}).items():
        out[sub] = sub_schema
    return out


def schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update(_pydantic(GenericSms, "MessagingGenericSms"))
    out.update(_pydantic(GenericStatus, "MessagingGenericStatus"))
    out.update(_pydantic(SnsIn, "MessagingSnsMessage"))
    timestamp = {"type": ["string", "null"], "format": "date-time"}
    out.update({
        "MessagingReceived": {"type": "object", "required": ["message_id", "contact_id", "tracking_number", "duplicate"],
                              "properties": {"message_id": {"type": "integer"}, "contact_id": {"type": "integer"},
                                             "tracking_number": {"type": "string"}, "duplicate": {"type": "boolean"},
                                             "new_contact": {"type": "boolean"},
                                             "rejected_media": {"type": "array", "items": {"type": "string"}}}},
        "MessagingStatusResult": {"type": "object", "properties": {"message_id": {"type": "integer"},
                                                                   "status": {"type": "string"}}},
        "MessagingTwilioSms": {"type": "object", "required": ["MessageSid", "From"], "properties": {
            "MessageSid": {"type": "string", "maxLength": 200}, "From": {"type": "string", "maxLength": 40},
            "To": {"type": "string"}, "Body": {"type": "string"},
            "NumMedia": {"type": "string", "pattern": "^[0-9]{1,2}$"},
            "MediaUrl0": {"type": "string"}, "MediaContentType0": {"type": "string"}},
            "additionalProperties": {"type": "string"}},
        "MessagingTwilioStatus": {"type": "object", "required": ["MessageSid", "MessageStatus"], "properties": {
            "MessageSid": {"type": "string", "maxLength": 200}, "MessageStatus": {"type": "string", "maxLength": 20},
            "ErrorCode": {"type": "string"}}, "additionalProperties": {"type": "string"}},
        "MessagingReply": {"type": "object", "required": ["body"], "properties": {
            "body": {"type": "string", "minLength": 1, "maxLength": 2000}}},
        "MessagingChatLineIn": {"type": "object", "required": ["body"], "properties": {
            "body": {"type": "string", "minLength": 1, "maxLength": 2000},
            "id": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_-]{1,64}$"}}},
        "MessagingChatLine": {"type": "object", "properties": {
            "type": {"const": "message"}, "conversation_id": {"type": "integer"}, "id": {"type": "integer"},
            "from": {"enum": ["citizen", "agent"]}, "agent": {"type": ["string", "null"]},
            "body": {"type": "string"}, "at": timestamp, "client_id": {"type": "string"}}},
        "MessagingConversation": {"type": "object", "required": ["id", "contact_id", "status"], "properties": {
            "id": {"type": "integer"}, "contact_id": {"type": "integer"}, "citizen_id": {"type": "integer"},
            "tracking_number": {"type": ["string", "null"]}, "status": {"enum": ["waiting", "active", "closed"]},
            "agent": {"type": ["string", "null"]}, "language": {"type": "string"}, "queued_at": timestamp,
            "assigned_at": timestamp, "position": {"type": ["integer", "null"]},
            "messages": {"type": "array", "items": _ref("MessagingChatLine")}}},
        "MessagingChats": {"type": "object", "properties": {
            "waiting": {"type": "array", "items": _ref("MessagingConversation")},
            "active": {"type": "array", "items": _ref("MessagingConversation")}}},
        "MessagingMessage": {"type": "object", "properties": {
            "id": {"type": "integer"}, "direction": {"enum": ["in", "out"]}, "channel": {"type": "string"},
            "provider": {"type": "string"}, "sender": {"type": "string"}, "body": {"type": "string"},
            "status": {"type": "string"}, "at": timestamp, "media": {"type": "array", "items": {
                "type": "object", "properties": {"id": {"type": "integer"}, "content_type": {"type": "string"},
                                                 "size_bytes": {"type": "integer"}, "url": {"type": "string"}}}}}},
        "MessagingThread": {"type": "object", "properties": {
            "contact_id": {"type": "integer"}, "tracking_number": {"type": ["string", "null"]},
            "channel": {"type": "string"}, "status": {"type": "string"},
            "messages": {"type": "array", "items": _ref("MessagingMessage")}}},
        "MessagingReplyQueued": {"type": "object", "properties": {
            "message_id": {"type": "integer"}, "status": {"const": "queued"}, "channel": {"enum": ["sms", "sns"]}}},
        "MessagingSnsReport": {"type": "object", "properties": {
            "since": {"type": "string"}, "until": {"type": "string"}, "hours": {"type": "number"},
            "total": {"type": "integer"}, "answered_in_time": {"type": "integer"},
            "answered_late": {"type": "integer"}, "overdue": {"type": "integer"}, "pending": {"type": "integer"},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "message_id": {"type": "integer"}, "contact_id": {"type": "integer"}, "network": {"type": "string"},
                "received_at": {"type": "string"}, "due_at": {"type": "string"}, "replied_at": timestamp,
                "state": {"enum": ["answered_in_time", "answered_late", "overdue", "pending"]}}}}}},
    })
    return out


SIGNED = [{"name": "X-Dasan-Signature", "in": "header", "required": True,
           "description": "sha256=<hex HMAC-SHA256 of the raw body with sms.webhook_secret>",
           "schema": {"type": "string"}}]
TWILIO_SIGNED = [{"name": "X-Twilio-Signature", "in": "header", "required": True,
                  "description": "base64 HMAC-SHA1 of URL + sorted params with the auth token",
                  "schema": {"type": "string"}}]
ID = [{"name": "id", "in": "path", "required": True,
       "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}]
SIGNATURE_ERRORS = {"400": _error("malformed body"), "401": _error("signature missing"),
                    "403": _error("signature does not match (forged request)"),
                    "413": _error("body too large"), "429": _error("rate limit")}
AGENT = {"401": _error("sign in first"), "403": _error("role or CSRF token missing")}
TWIML = {"description": "stored (empty TwiML)", "content": {"text/xml": {"schema": {"type": "string"}}}}
TAGS = ["messaging"]


def _form(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": _ref(name)}}}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, **_json(name)}


PATHS: dict[str, Any] = {
    "/webhooks/sms": {"post": {
        "summary": "Inbound SMS/MMS, provider-neutral JSON (signed)", "operationId": "messagingGenericSms",
        "tags": TAGS, "parameters": SIGNED, "requestBody": _body("MessagingGenericSms"),
        "responses": {"200": {"description": "stored (or a duplicate of a stored message)",
                              **_json("MessagingReceived")}, **SIGNATURE_ERRORS,
                      "503": _error("stored but not handed on; retry")}}},
    "/webhooks/sms/status": {"post": {
        "summary": "Delivery status of an outbound message (signed)", "operationId": "messagingGenericStatus",
        "tags": TAGS, "parameters": SIGNED, "requestBody": _body("MessagingGenericStatus"),
        "responses": {"200": {"description": "status recorded", **_json("MessagingStatusResult")},
                      **SIGNATURE_ERRORS, "404": _error("no message with that id")}}},
    "/webhooks/twilio/sms": {"post": {
        "summary": "Inbound SMS/MMS in Twilio's webhook form", "operationId": "messagingTwilioSms", "tags": TAGS,
        "parameters": TWILIO_SIGNED, "requestBody": _form("MessagingTwilioSms"),
        "responses": {"200": TWIML, **SIGNATURE_ERRORS, "415": _error("not form-encoded"),
                      "503": _error("stored but not handed on; retry")}}},
    "/webhooks/twilio/status": {"post": {
        "summary": "Twilio status callback", "operationId": "messagingTwilioStatus", "tags": TAGS,
        "parameters": TWILIO_SIGNED, "requestBody": _form("MessagingTwilioStatus"),
        "responses": {"200": TWIML, **SIGNATURE_ERRORS, "404": _error("no message with that MessageSid"),
                      "415": _error("not form-encoded")}}},
    "/webhooks/sns/{network}": {"post": {
        "summary": "Inbound social-network message (signed); a reply is due within sms.sns_reply_hours",
        "operationId": "messagingSns", "tags": TAGS,
        "parameters": [{"name": "network", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z0-9_-]{1,16}$"}}, *SIGNED],
        "requestBody": _body("MessagingSnsMessage"),
        "responses": {"200": {"description": "stored", **_json("MessagingReceived")}, **SIGNATURE_ERRORS,
                      "503": _error("stored but not handed on; retry")}}},
    "/chat": {"get": {"summary": "The citizen's web chat page (Korean/English)", "operationId": "messagingChatPage",
                      "tags": TAGS, "responses": {"200": {"description": "HTML page",
                                                          "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    "/chat/ws": {"get": {"summary": "Citizen chat WebSocket (see docs/messaging.md for frames)",
                         "operationId": "messagingChatWs", "tags": TAGS,
                         "responses": {"101": {"description": "WebSocket"},
                                       "400": _error("not a WebSocket upgrade"),
                                       "403": _error("cross-site WebSocket")}}},
    "/api/messaging/agent/ws": {"get": {"summary": "Agent chat desk WebSocket", "operationId": "messagingAgentWs",
                                        "tags": TAGS, "security": [{"session": []}],
                                        "responses": {"101": {"description": "WebSocket"},
                                                      "400": _error("not a WebSocket upgrade"), **AGENT}}},
    "/api/messaging/chats": {"get": {"summary": "Waiting queue and active chats", "operationId": "messagingChats",
                                     "tags": TAGS, "security": [{"session": []}],
                                     "responses": {"200": {"description": "chats", **_json("MessagingChats")},
                                                   **AGENT}}},
    "/api/messaging/chats/{id}": {"get": {
        "summary": "One conversation with its lines", "operationId": "messagingChat", "tags": TAGS,
        "security": [{"session": []}], "parameters": ID,
        "responses": {"200": {"description": "conversation", **_json("MessagingConversation")},
                      "404": _error("no such conversation"), **AGENT}}},
    "/api/messaging/chats/{id}/accept": {"post": {
        "summary": "Take a waiting chat", "operationId": "messagingChatAccept", "tags": TAGS,
        "security": [{"session": []}], "parameters": ID,
        "responses": {"200": {"description": "now yours", **_json("MessagingConversation")},
                      "404": _error("no such conversation"), "409": _error("no longer waiting"), **AGENT}}},
    "/api/messaging/chats/{id}/messages": {"post": {
        "summary": "Send a line in your chat", "operationId": "messagingChatSend", "tags": TAGS,
        "security": [{"session": []}], "parameters": ID, "requestBody": _body("MessagingChatLineIn"),
        "responses": {"201": {"description": "stored and sent", **_json("MessagingChatLine")},
                      "200": {"description": "that line id was stored before"},
                      "400": _error("bad body"), "404": _error("no such conversation"),
                      "409": _error("not your active chat"), **AGENT}}},
    "/api/messaging/chats/{id}/close": {"post": {
        "summary": "End a chat", "operationId": "messagingChatClose", "tags": TAGS,
        "security": [{"session": []}], "parameters": ID,
        "responses": {"200": {"description": "closed (false if it already was)"},
                      "404": _error("no such conversation"), "409": _error("another agent's chat"), **AGENT}}},
    "/api/messaging/contacts/{id}/messages": {"get": {
        "summary": "Every message of a contact (SMS, MMS photos, chat, SNS)", "operationId": "messagingThread",
        "tags": TAGS, "security": [{"session": []}], "parameters": ID,
        "responses": {"200": {"description": "thread", **_json("MessagingThread")},
                      "404": _error("no such contact"), **AGENT}}},
    "/api/messaging/contacts/{id}/reply": {"post": {
        "summary": "Reply by SMS or SNS on a contact", "operationId": "messagingReply", "tags": TAGS,
        "security": [{"session": []}], "parameters": ID, "requestBody": _body("MessagingReply"),
        "responses": {"202": {"description": "saved and queued", **_json("MessagingReplyQueued")},
                      "400": _error("bad body"), "404": _error("no such contact"),
                      "409": _error("nothing to reply to"), "503": _error("saved, not queued"), **AGENT}}},
    "/api/messaging/media/{id}": {"get": {
        "summary": "An MMS photo", "operationId": "messagingMedia", "tags": TAGS, "security": [{"session": []}],
        "parameters": ID,
        "responses": {"200": {"description": "the photo", "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/gif": {"schema": {"type": "string", "format": "binary"}}}},
            "404": _error("no such media"), **AGENT}}},
    "/api/messaging/outbox": {"get": {
        "summary": "Messages recorded by the outbox provider (no gateway)", "operationId": "messagingOutbox",
        "tags": TAGS, "security": [{"session": []}],
        "responses": {"200": {"description": "newest first, at most 500", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"messages": {"type": "array", "items": {
                "type": "object", "properties": {
                    "id": {"type": "integer"}, "contact_id": {"type": "integer"}, "channel": {"type": "string"},
                    "to": {"type": "string"}, "body": {"type": "string"}, "kind": {"type": "string"},
                    "at": {"type": ["string", "null"]}}}}}}}}}, **AGENT}}},
    "/api/messaging/sns/deadlines": {"get": {
        "summary": "SNS reply-deadline report", "operationId": "messagingSnsDeadlines", "tags": TAGS,
        "security": [{"session": []}],
        "parameters": [{"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                       {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}}],
        "responses": {"200": {"description": "report", **_json("MessagingSnsReport")},
                      "400": _error("bad date-time"), **AGENT}}},
}
