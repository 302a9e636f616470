"""The OpenAPI description of the projection query API (served at GET /openapi.json)."""

from __future__ import annotations

from typing import Any


def _error_responses() -> dict[str, Any]:
    return {"400": {"description": "bad request, bad SQL or a statement that writes",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


_ROWS = {"type": "array", "items": {"type": "object", "additionalProperties": True}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "easysched projections",
        "version": "1",
        "description": "Read-only queries over the DuckDB projection of the scheduler's log. Times are UTC "
                       "(ISO 8601). Listens on 127.0.0.1; the address is in <data>/service.json.",
    },
    "paths": {
        "/query": {"post": {
            "summary": "Run one read-only SQL statement (SELECT, or EXPLAIN of one)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["sql"],
                "properties": {
                    "sql": {"type": "string"},
                    "params": {"type": "array", "description": "values for $1, $2, ... or ?"},
                    "max_rows": {"type": "integer", "minimum": 0},
                    "format": {"enum": ["json", "arrow"], "description": "arrow: an Arrow IPC stream"},
                }}}}},
            "responses": {**_ok({"$ref": "#/components/schemas/QueryResult"}), **_error_responses()},
        }},
        "/instances": {"get": {
            "summary": "Workflow instances, newest first",
            "parameters": [
                {"name": "workflow", "in": "query", "schema": {"type": "string"}},
                {"name": "state", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100}},
            ],
            "responses": _ok({"type": "object", "properties": {"instances": _ROWS}}),
        }},
        "/instances/{id}": {"get": {
            "summary": "One workflow instance with its task attempts and pending timers",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                **_ok({"type": "object", "properties": {"instance": {"type": "object"}, "tasks": _ROWS,
                                                         "timers": _ROWS}}),
                "404": {"description": "no such instance"},
            },
        }},
        "/timers": {"get": {
            "summary": "The delay queue: pending timers, earliest first",
            "parameters": [{"name": "instance", "in": "query", "schema": {"type": "string"}}],
            "responses": _ok({"type": "object", "properties": {"timers": _ROWS}}),
        }},
        "/stats": {"get": {
            "summary": "Outcome counts and p50/p95 durations per workflow and task; projection progress",
            "responses": _ok({"type": "object", "properties": {"workflows": _ROWS, "tasks": _ROWS,
                                                                "projection": {"type": "object"}}}),
        }},
        "/health": {"get": {"summary": "Liveness and whether the projection has caught up",
                            "responses": _ok({"type": "object"})}},
        "/rebuild": {"post": {
            "summary": "Drop the projection and refold it from the log (blocks until done)",
            "description": "Where the server has a token (a dashboard: service.json or $EASYSCHED_UI_TOKEN), "
                           "the X-Easysched-Token header must carry it; 401 otherwise.",
            "parameters": [{"name": "X-Easysched-Token", "in": "header", "schema": {"type": "string"}}],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": _ok({"type": "object", "properties": {"records": {"type": "integer"},
                                                                "seconds": {"type": "number"}}}),
        }},
        "/openapi.json": {"get": {"summary": "This description", "responses": _ok({"type": "object"})}},
    },
    "components": {"schemas": {
        "QueryResult": {"type": "object", "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "types": {"type": "array", "items": {"type": "string"}, "description": "DuckDB type of each column"},
            "rows": {"type": "array", "items": {"type": "array"}},
            "row_count": {"type": "integer"},
            "truncated": {"type": "boolean", "description": "max_rows cut the answer"},
        }},
        "Error": {"type": "object", "properties": {
            "error": {"type": "string"},
            "kind": {"enum": ["read_only", "query", "bad_request", "not_found", "forbidden", "unauthorized",
                              "internal"]},
        }},
    }},
}
