"""Actions from the dashboard: the same commands the CLI appends, behind a token, with the master's verdict.

Every action is a POST with a JSON body (a browser cannot send that cross-site without a
CORS preflight, which this server never grants), passes the server's Origin/Host guard, and
carries the token of `service.json` (or EASYSCHED_UI_TOKEN) in the `X-Easysched-Token` header.
A read-only dashboard refuses every action.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from easysched_es.runtime.embedded.client import CommandRejectedError
from projections.http_api import BadRequest, error_response, json_body, json_response

TOKEN_HEADER = "x-easysched-token"
TOKEN_ENV = "EASYSCHED_UI_TOKEN"

# action -> (client method, the body fields it takes)
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "stop": ("stop", ("instance",)),
    "pause": ("pause", ("instance",)),
    "resume": ("resume", ("instance",)),
    "kill_task": ("kill_task", ("instance", "task")),
    "trigger": ("trigger_schedule", ("workflow",)),
    "schedule_online": ("schedule_online", ("workflow",)),
    "schedule_offline": ("schedule_offline", ("workflow",)),
}


def ui_token() -> str:
    """The token actions need: $EASYSCHED_UI_TOKEN, else a fresh random one (written to service.json)."""
    return os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)


class Actions:
    """The action endpoint: checks, then `client()`'s method, then the verdict as JSON."""

    def __init__(self, client: Callable[[], Any], token: str, read_only: bool) -> None:
        self._client = client
        self._token = token
        self.read_only = read_only

    def available(self) -> list[str]:
        """The actions this dashboard offers (none when read-only)."""
        return [] if self.read_only else list(ACTIONS)

    async def endpoint(self, request: Request) -> Response:
        """POST /api/actions/{action} with {"instance": ..., "task": ...}."""
        action = request.path_params["action"]
        if self.read_only:
            return error_response(403, "this dashboard is read-only (--read-only): actions are refused", "read_only")
        given = request.headers.get(TOKEN_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), self._token.encode()):
            why = "missing" if not given else "wrong"
            return error_response(401, f"the token is {why}: paste the token from <data>/service.json "
                                  "(or $EASYSCHED_UI_TOKEN) into the dashboard", "unauthorized")
        if action not in ACTIONS:
            return error_response(404, f"no action {action!r}; actions: {', '.join(ACTIONS)}", "not_found")
        try:
            body = await json_body(request)
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "bad_request")
        method, fields = ACTIONS[action]
        args = []
        for name in fields:
            value = body.get(name)
            if not isinstance(value, str) or not value:
                return error_response(400, f"{action} needs {name!r}: a non-empty string", "bad_request")
            args.append(value)
        try:
            verdict = await run_in_threadpool(self._submit, method, args)
        except CommandRejectedError as exc:
            return json_response({"ok": False, "action": action, "reason": exc.reason, "offset": exc.offset})
        return json_response({"ok": True, "action": action, **verdict})

    def _submit(self, method: str, args: list[str]) -> dict[str, Any]:
        client = self._client()
        try:
            verdict = getattr(client, method)(*args)
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()
        return {"offset": verdict.offset, "events": [msgspec.to_builtins(ev) for ev in verdict.events]}
