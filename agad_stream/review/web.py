"""The review page: server-rendered HTML (Starlette, Jinja2), a little JavaScript, no build step.

Pages: ``/login``; ``/`` the queue (highest score first, filter by camera, counts); ``/items/ID``
an item (opening it claims it); ``/next`` the highest-scored item nobody has. JSON for scripts and
the page's own JavaScript: ``GET /api/queue``, ``POST /api/next``, ``POST /items/ID/decision``.
Images by frame_id only, looked up in Redis: ``/frames/ID/image``, ``/thumb``, ``/heatmap``.
``/metrics`` for Prometheus (a reviewer's token as a bearer token, or a session).

Every request but ``/login`` and the static files needs a session; every POST its CSRF token;
request bodies are bounded. Decisions go through :class:`~agad_stream.review.decisions.Reviewing`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import cv2
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agad_stream.errors import AgadError
from agad_stream.preprocess import BadImageError, decode_image
from agad_stream.review.auth import COOKIE, CSRF_HEADER, Reviewers, Session, Sessions, csrf_ok
from agad_stream.review.decisions import SKIP, GoneError, NotSavedError, Reviewing, TakenError
from agad_stream.review.store import Summary

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_BODY_BYTES = 16 * 1024
"""Largest request body accepted: a sign-in or a decision is a few hundred bytes."""
FRAME_ID = re.compile(r"[^\x00-\x1f\x7f/\\]{1,256}")
"""A frame_id as the scorer accepts one, minus what could ever pass for a path."""
SHOWN_AS_IS = {"image/jpeg", "image/jpg", "image/png", "image/webp", "image/bmp", "image/gif"}
THUMB_SIDE = 160
REFRESH_S = 2.0


class BodyLimit:
    """Refuse a request whose body is larger than ``limit`` bytes (413), declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await PlainTextResponse("request body too large", status_code=413)(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, bounded, send)
        except _TooLarge:
            await PlainTextResponse("request body too large", status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(
    reviewing: Reviewing, sessions: Sessions, reviewers: Reviewers, *, secure_cookies: bool = False
) -> ASGIApp:
    """The review page's ASGI application."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["timestamp"] = _timestamp
    last_refresh = [0.0]

    def refresh() -> None:
        if time.monotonic() - last_refresh[0] >= REFRESH_S:
            reviewing.refresh()
            last_refresh[0] = time.monotonic()

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def page(
        name: str, request: Request, session: Session | None, status_code: int = 200, **context: Any
    ) -> Response:
        return templates.TemplateResponse(
            request,
            name,
            {"session": session, "defects": reviewing.defects, **context},
            status_code=status_code,
        )

    def signed_in(
        handler: Callable[[Request, Session], Response], *, api: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = session_of(request)
            if session is None:
                if api or request.method != "GET" or request.url.path.startswith(("/frames/", "/api/")):
                    return JSONResponse({"error": "sign in first"}, status_code=401)
                return RedirectResponse("/login", status_code=303)
            if request.method == "POST":
                presented = request.headers.get(CSRF_HEADER)
                if presented is None and request.headers.get("content-type", "").startswith(
                    "application/x-www-form-urlencoded"
                ):
                    presented = str((await request.form()).get("csrf", ""))
                if not csrf_ok(session, presented):
                    return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
            return await _in_thread(handler, request, session)

        return endpoint

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return page("login.html", request, None, error=None)
        token = str((await request.form()).get("token", ""))
        reviewer = reviewers.who(token) if token else None
        if reviewer is None:
            log.warning("review sign-in refused from %s", request.client.host if request.client else "?")
            return page("login.html", request, None, error="That token is not a reviewer's.")
        session = sessions.start(reviewer)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            session.session_id,
            max_age=sessions.ttl_s,
            httponly=True,
            samesite="strict",
            secure=secure_cookies,
        )
        log.info("%s signed in", reviewer)
        return response

    def logout(request: Request, session: Session) -> Response:
        sessions.end(session.session_id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def queue(request: Request, session: Session) -> Response:
        refresh()
        camera = request.query_params.get("camera") or None
        everything = reviewing.store.pending()
        shown = [s for s in everything if camera is None or s.camera_id == camera]
        cameras = sorted({s.camera_id for s in everything})
        counts = reviewing.store.counts()
        return page(
            "queue.html", request, session, items=shown, cameras=cameras, camera=camera, counts=counts
        )

    def api_queue(request: Request, session: Session) -> Response:
        refresh()
        camera = request.query_params.get("camera") or None
        counts = reviewing.store.counts()
        return JSONResponse(
            {
                "items": [_summary_json(s) for s in reviewing.store.pending(camera)],
                "counts": {
                    "pending": counts.pending,
                    "claimed": counts.claimed,
                    "decided_today": counts.decided_today,
                },
            }
        )

    def next_item(request: Request, session: Session) -> Response:
        refresh()
        item = reviewing.store.next_for(session.reviewer, sessions.skipped(session))
        if request.url.path.startswith("/api/"):
            return JSONResponse(_summary_json(item.summary)) if item else Response(status_code=204)
        if item is None:
            return RedirectResponse("/?empty=1", status_code=303)
        return RedirectResponse(f"/items/{_quote(item.summary.frame_id)}", status_code=303)

    def item_view(request: Request, session: Session) -> Response:
        frame_id = _frame_id(request)
        if frame_id is None:
            return PlainTextResponse("not a frame id", status_code=404)
        try:
            item = reviewing.open(frame_id, session.reviewer)
        except (TakenError, GoneError) as exc:
            return page("gone.html", request, session, message=str(exc), status_code=409)
        return page("item.html", request, session, item=item.summary, quoted=_quote(frame_id))

    def decision(request: Request, session: Session) -> Response:
        frame_id = _frame_id(request)
        if frame_id is None:
            return JSONResponse({"error": "not a frame id"}, status_code=404)
        body = _sync_json(request)
        label, defect = str(body.get("label", "")), str(body.get("defect", "") or "")
        try:
            outcome = reviewing.decide(frame_id, session.reviewer, label, defect)
        except TakenError as exc:
            return JSONResponse({"saved": False, "error": str(exc)}, status_code=409)
        except GoneError as exc:
            return JSONResponse({"saved": False, "error": str(exc)}, status_code=410)
        except NotSavedError as exc:
            log.error("%s", exc)
            return JSONResponse({"saved": False, "error": str(exc)}, status_code=503)
        except AgadError as exc:
            return JSONResponse({"saved": False, "error": str(exc)}, status_code=400)
        if outcome.label == SKIP:
            sessions.skip(session, frame_id)
        log.info("%s decided %s: %s %s", session.reviewer, frame_id, outcome.label, outcome.defect)
        return JSONResponse({"saved": outcome.label != SKIP, "label": outcome.label, "next": "/next"})

    def frame_file(kind: str) -> Callable[[Request, Session], Response]:
        def endpoint(request: Request, session: Session) -> Response:
            frame_id = _frame_id(request)
            item = reviewing.store.get(frame_id) if frame_id is not None else None
            if item is None:
                return PlainTextResponse("no such frame in the review queue", status_code=404)
            try:
                if kind == "heatmap":
                    return Response(_coloured(item.heatmap_png), media_type="image/png")
                if kind == "thumb":
                    return Response(_thumbnail(item.image, item.content_type), media_type="image/jpeg")
                if item.content_type in SHOWN_AS_IS:
                    return Response(item.image, media_type=item.content_type)
                return Response(_as_png(item.image, item.content_type), media_type="image/png")
            except BadImageError as exc:
                return PlainTextResponse(f"cannot show this frame: {exc}", status_code=422)

        return endpoint

    async def metrics(request: Request) -> Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if session_of(request) is None and not (bearer and reviewers.who(bearer)):
            return PlainTextResponse("sign in, or send a reviewer's token as a bearer token", status_code=401)
        await run_in_threadpool(reviewing.refresh)
        return Response(generate_latest(reviewing.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", signed_in(logout), methods=["POST"]),
        Route("/", signed_in(queue)),
        Route("/next", signed_in(next_item)),
        Route("/api/queue", signed_in(api_queue, api=True)),
        Route("/api/next", signed_in(next_item, api=True), methods=["POST"]),
        Route("/items/{frame_id:path}/decision", signed_in(decision, api=True), methods=["POST"]),
        Route("/items/{frame_id:path}", signed_in(item_view)),
        Route("/frames/{frame_id:path}/image", signed_in(frame_file("image"))),
        Route("/frames/{frame_id:path}/thumb", signed_in(frame_file("thumb"))),
        Route("/frames/{frame_id:path}/heatmap", signed_in(frame_file("heatmap"))),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    return _SecurityHeaders(BodyLimit(app, MAX_BODY_BYTES))


class _SecurityHeaders:
    """No framing, no inline scripts, no referrer, no caching of frames."""

    HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _in_thread(
    handler: Callable[[Request, Any], Response], request: Request, session: Session | None
) -> Response:
    """Run a blocking handler (Redis, Kafka) off the event loop; its JSON body is read first."""
    if request.method == "POST" and "json" in request.headers.get("content-type", ""):
        raw = await request.body()
        try:
            request.state.json = json.loads(raw or b"{}")
        except ValueError:
            request.state.json = {}
    return await run_in_threadpool(handler, request, session)


def _sync_json(request: Request) -> dict[str, Any]:
    body = getattr(request.state, "json", None)
    return body if isinstance(body, dict) else {}


def _timestamp(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _frame_id(request: Request) -> str | None:
    frame_id = str(request.path_params.get("frame_id", ""))
    return frame_id if FRAME_ID.fullmatch(frame_id) else None


def _quote(frame_id: str) -> str:
    return quote(frame_id, safe="")


def _summary_json(summary: Summary) -> dict[str, Any]:
    return {
        "frame_id": summary.frame_id,
        "camera_id": summary.camera_id,
        "ts_ms": summary.ts_ms,
        "score": summary.score,
        "threshold": summary.threshold,
        "model_version": summary.model_version,
        "flagged_ms": summary.flagged_ms,
        "owner": summary.owner,
    }


def _decoded(data: bytes, content_type: str) -> np.ndarray:
    image = decode_image(data, content_type)
    return image if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def _encoded(image: np.ndarray, suffix: str) -> bytes:
    ok, encoded = cv2.imencode(suffix, image)
    if not ok:
        raise BadImageError(f"OpenCV cannot encode a {image.shape} image as {suffix}")
    return bytes(encoded.tobytes())


def _as_png(data: bytes, content_type: str) -> bytes:
    return _encoded(_decoded(data, content_type), ".png")


def _thumbnail(data: bytes, content_type: str) -> bytes:
    image = _decoded(data, content_type)
    height, width = image.shape[:2]
    scale = THUMB_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return _encoded(image, ".jpg")


def _coloured(heatmap_png: bytes) -> bytes:
    grey = cv2.imdecode(np.frombuffer(heatmap_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise BadImageError("the stored heat-map is not a PNG")
    return _encoded(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), ".png")
