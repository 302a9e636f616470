"""The dashboard's routes: pages, their JSON, the log tail, CSV, actions and /metrics.

`web_routes(options)` gives the route factory that `ProjectionService` mounts beside the query
API. Pages are Jinja2 templates with autoescaping (every user-written string is escaped) and a
Content-Security-Policy that allows only this server's own script and style: no inline script,
no CDN.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from easysched_es.runtime.fold import LogSource
from easysched_es.runtime.worker import attempt_file_name
from easysched_es.web import data
from easysched_es.web.actions import Actions
from easysched_es.web.metrics import ProjectionCollector, render
from easysched_es.web.svg import dag_svg, gantt_svg
from easysched_es.web.timetravel import TimeTravel, TimeTravelError
from projections.http_api import BadRequest, api_errors, error_response, int_param, json_response
from projections.queries import rows_of

HERE = Path(__file__).parent
LOG_TAIL_BYTES = 64 << 10
CSV_MAX_ROWS = 1_000_000
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class WebOptions:
    """How the dashboard reaches the log and appends commands."""

    source: LogSource
    client: Callable[[], Any]
    token: str
    read_only: bool = False
    logs_dir: Path | None = None
    log_dirs: dict[str, Path] | None = None
    pages: bool = True


_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)


def log_path(logs_dir: Path, instance: str, task: str, attempt: int) -> Path:
    """Where the embedded worker writes an attempt's output (see `runtime.worker.Worker`)."""
    return logs_dir / quote(instance, safe="") / f"{attempt_file_name(task, attempt)}.log"


def read_tail(path: Path, start: int | None) -> dict[str, Any]:
    """The log from byte `start` (None: its last LOG_TAIL_BYTES), at most LOG_TAIL_BYTES of it."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            begin = max(size - LOG_TAIL_BYTES, 0) if start is None else min(start, size)
            f.seek(begin)
            chunk = f.read(LOG_TAIL_BYTES)
    except FileNotFoundError:
        return {"exists": False, "text": "", "next": 0, "size": 0}
    return {"exists": True, "text": chunk.decode(errors="replace"), "next": begin + len(chunk), "size": size,
            "skipped": begin if start is None else 0}


def web_routes(options: WebOptions) -> Callable[[Any], Sequence[BaseRoute]]:
    """The route factory for `ProjectionService(routes=...)`."""
    actions = Actions(options.client, options.token, options.read_only)
    travel = TimeTravel(options.source)

    def factory(service: Any) -> Sequence[BaseRoute]:
        def reader() -> Any:
            return service.projection.reader

        collector = ProjectionCollector(reader, options.log_dirs)

        def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
            html = _env.get_template(name).render(actions=actions.available(), read_only=options.read_only,
                                                  **context)
            return HTMLResponse(html, status, headers=SECURITY_HEADERS)

        def missing(what: str) -> HTMLResponse:
            return page("error.html", 404, title="not found", message=what)

        async def overview_page(request: Request) -> Response:
            return page("overview.html", title="Overview", view=await run_in_threadpool(data.overview, reader()))

        async def workflows_page(request: Request) -> Response:
            return page("workflows.html", title="Workflows",
                        workflows=await run_in_threadpool(data.workflows, reader()))

        async def workflow_page(request: Request) -> Response:
            name = request.path_params["name"]
            found = await run_in_threadpool(data.workflow, reader(), name)
            if found is None:
                return missing(f"no workflow {name!r}")
            return page("workflow.html", title=name, view=found)

        async def instance_page(request: Request) -> Response:
            instance_id = request.path_params["id"]
            found = await run_in_threadpool(data.instance, reader(), instance_id)
            if found is None:
                return missing(f"no workflow instance {instance_id!r} (yet: the projection may still be catching up)")
            return page("instance.html", title=instance_id, view=found, dag=dag_svg(found["tasks"]),
                        gantt=gantt_svg(found["attempts"]), at=request.query_params.get("at"),
                        trace_limit=data.TRACE_LIMIT)

        async def sql_page(request: Request) -> Response:
            return page("sql.html", title="SQL", sql=request.query_params.get("sql", ""))

        async def overview_json(request: Request) -> Response:
            return json_response(await run_in_threadpool(data.overview, reader()))

        async def instance_json(request: Request) -> Response:
            instance_id = request.path_params["id"]
            with_trace = request.query_params.get("trace") == "1"
            found = await run_in_threadpool(data.instance, reader(), instance_id, with_trace)
            if found is None:
                return error_response(404, f"no workflow instance {instance_id!r}", "not_found")
            found["gantt_svg"] = str(gantt_svg(found["attempts"]))
            return json_response(found)

        async def at_json(request: Request) -> Response:
            offset = int_param(request.path_params["offset"], "offset")
            try:
                view = await run_in_threadpool(travel.at, request.path_params["id"], offset)
            except TimeTravelError as exc:
                raise BadRequest(str(exc)) from None
            return json_response(view)

        async def log_json(request: Request) -> Response:
            if options.logs_dir is None:
                return error_response(404, "task logs are on the workers' machines in this mode", "not_found")
            q = request.query_params
            task = q.get("task") or ""
            if not task:
                raise BadRequest("give ?task=NAME&attempt=N")
            attempt = int_param(q.get("attempt", "1"), "attempt")
            start = int_param(q["from"], "from") if "from" in q else None
            path = log_path(options.logs_dir, request.path_params["id"], task, attempt)
            return json_response(await run_in_threadpool(read_tail, path, start))

        async def sql_csv(request: Request) -> Response:
            sql = request.query_params.get("sql", "")
            if not sql.strip():
                raise BadRequest("give ?sql=SELECT ...")
            result = await run_in_threadpool(reader().run, sql, None, CSV_MAX_ROWS)
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(result.columns)
            writer.writerows(rows_of(result))
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": 'attachment; filename="query.csv"', **SECURITY_HEADERS})

        async def metrics(request: Request) -> Response:
            body = await run_in_threadpool(render, collector)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

        routes: list[BaseRoute] = [Route("/metrics", api_errors(metrics), methods=["GET"])]
        if not options.pages:
            return routes
        return [
            *routes,
            Route("/", api_errors(overview_page), methods=["GET"]),
            Route("/workflows", api_errors(workflows_page), methods=["GET"]),
            Route("/workflows/{name:path}", api_errors(workflow_page), methods=["GET"]),
            Route("/instance/{id:path}", api_errors(instance_page), methods=["GET"]),
            Route("/sql", api_errors(sql_page), methods=["GET"]),
            Route("/api/overview", api_errors(overview_json), methods=["GET"]),
            Route("/api/instance/{id}/at/{offset}", api_errors(at_json), methods=["GET"]),
            Route("/api/instance/{id}/log", api_errors(log_json), methods=["GET"]),
            Route("/api/instance/{id}", api_errors(instance_json), methods=["GET"]),
            Route("/api/sql.csv", api_errors(sql_csv), methods=["GET"]),
            Route("/api/actions/{action}", actions.endpoint, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    return factory
