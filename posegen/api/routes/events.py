"""GET /events (SSE) and GET /ws (the seed's WebSocket channel): the caller's completion events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, WebSocket
from starlette.concurrency import run_in_threadpool

from posegen.api.deps import CurrentUser, SessionDep
from posegen.api.event_channel import ChannelSession, authenticate
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


@router.websocket("/ws")
async def websocket_channel(websocket: WebSocket) -> None:
    """Subscribe with `{"type": "subscribe", "channel": "pose-generator:{userId}"}`; then
    `background_change_complete`, `background_change_failed`, `export_complete`,
    `export_failed`, `export_progress` and `pose_request_status_changed` messages arrive.
    `?token=<JWT>` or the web app's session cookie; otherwise the socket closes with 4401."""
    user_id, refusal = await authenticate(websocket)
    # Accepted before refusing: a close code reaches the client only on an open socket.
    await websocket.accept()
    if user_id is None:
        await websocket.close(code=refusal, reason="Unauthorized")
        return
    await ChannelSession(websocket, hub_of(websocket.app), user_id).run()
