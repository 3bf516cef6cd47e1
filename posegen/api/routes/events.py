"""GET /events: the caller's completion events (background changes, exports, pose requests), SSE."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool

from posegen.api.deps import CurrentUser, SessionDep
from posegen.api.event_hub import hub_of
from posegen.api.event_stream import EventStreamResponse, UserEventStream

router = APIRouter(tags=["events"])


@router.get(
    "/events",
    response_class=EventStreamResponse,
    status_code=200,  # OpenAPI cannot read a default from EventStreamResponse's signature
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `id` (event id), `event` (e.g. "
            "`background-change.completed`), `data` (JSON: id, event, occurred, resourceId, "
            "payload); a `: keepalive` comment when nothing happened for a while.",
        },
        401: {"description": "Missing or invalid bearer token"},
        503: {"description": "The Prefect API is not reachable"},
    },
)
async def stream_events(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventStreamResponse:
    """Relay the caller's events as they happen; `Last-Event-ID` resumes without loss.

    The database session is closed before streaming: a stream lasts hours, and holding a pooled
    connection (or, on SQLite, a read lock) that long would starve every other request.
    """
    user_id = user.id
    await run_in_threadpool(session.close)
    stream = UserEventStream(hub_of(request.app), user_id, last_event_id)
    await stream.open()
    return EventStreamResponse(stream)
