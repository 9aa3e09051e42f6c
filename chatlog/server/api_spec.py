"""The OpenAPI 3.1 document of the HTTP server API (``GET /api/openapi.json``).

Kept beside :mod:`.api` and checked against it by a test: every route the server adds is
described here with the statuses it answers, and nothing else is.
"""

from __future__ import annotations

from typing import Any

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_ROOM = {"name": "room", "in": "path", "required": True, "schema": {"type": "string"}}
_COMMON = {"401": _PROBLEM, "429": _PROBLEM}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "integer"}, "description": description}


def _ok(status: str, schema: str, description: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {status: {"description": description, "content": {"application/json": {"schema": ref}}}}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "chatlog server API", "version": "1"},
    "security": [{"bearer": []}],
    "paths": {
        "/api/rooms": {
            "get": {
                "summary": "Every room with its message count, last ID and live connections",
                "responses": {**_ok("200", "Rooms", "the rooms"), **_COMMON, "503": _PROBLEM},
            }
        },
        "/api/rooms/{room}/messages": {
            "post": {
                "summary": "Append a message (author defaults to system); 201 after the commit",
                "parameters": [
                    _ROOM,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "maxLength": 64},
                        "description": "A retry with the same key is stored once",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Post"}}
                    },
                },
                "responses": {
                    **_ok("201", "Stored", "stored and sent to live sockets"),
                    "400": _PROBLEM,
                    **_COMMON,
                    "413": _PROBLEM,
                    "503": _PROBLEM,
                },
            },
            "get": {
                "summary": "Messages of the room, as History and resume send them",
                "parameters": [
                    _ROOM,
                    _query("after", "only IDs above this one, oldest first"),
                    _query("before", "only IDs below this one"),
                    _query("limit", "at most this many (1-500, default 50)"),
                ],
                "responses": {
                    **_ok("200", "Page", "a page of messages"),
                    "400": _PROBLEM,
                    **_COMMON,
                    "503": _PROBLEM,
                },
            },
        },
        "/api/rooms/{room}/users": {
            "get": {
                "summary": "Who is online in the room, across every server process",
                "parameters": [_ROOM],
                "responses": {
                    **_ok("200", "Users", "the room's users in join order"),
                    "400": _PROBLEM,
                    **_COMMON,
                    "503": _PROBLEM,
                },
            }
        },
        "/api/broadcast": {
            "post": {
                "summary": "Post as system to every room (as chatlog broadcast --all)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Text"}}
                    },
                },
                "responses": {
                    **_ok("201", "Broadcast", "stored in every room"),
                    "400": _PROBLEM,
                    **_COMMON,
                    "413": _PROBLEM,
                    "503": _PROBLEM,
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Problem": {
                "description": "RFC 9457 problem details",
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            },
            "Text": {
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}},
                "additionalProperties": False,
            },
            "Post": {
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}, "author": {"type": "string"}},
                "additionalProperties": False,
            },
            "Stored": {
                "type": "object",
                "required": ["ID", "Sent", "Room"],
                "properties": {
                    "ID": {"type": "integer"},
                    "Sent": {"type": "string"},
                    "Room": {"type": "string"},
                },
            },
            "Broadcast": {
                "type": "object",
                "properties": {
                    "Messages": {"type": "array", "items": {"$ref": "#/components/schemas/Stored"}}
                },
            },
            "Page": {
                "type": "object",
                "required": ["Messages", "Complete"],
                "properties": {
                    "Messages": {"type": "array", "items": {"type": "object"}},
                    "Complete": {"type": "boolean"},
                    "Reason": {"enum": ["limit", "retention"]},
                },
            },
            "Rooms": {
                "type": "object",
                "properties": {"Rooms": {"type": "array", "items": {"type": "object"}}},
            },
            "Users": {
                "type": "object",
                "properties": {
                    "Room": {"type": "string"},
                    "Users": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
