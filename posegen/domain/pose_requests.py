"""Community pose requests: submission, duplicates, votes, listing and the admin state machine.

Every write here is one short transaction committed before returning. The two invariants that
concurrency could break are held by the database, not by read-then-write code:
`votes_count` moves only together with a vote row that was really inserted or deleted, and
a partial unique index keeps one open request per user and normalized name.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import field_validator
from sqlalchemy import Select, case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from posegen.config import get_settings
from posegen.db.community import (
    DESCRIPTION_MAX,
    OPEN_STATUSES,
    POSE_NAME_MAX,
    PoseLibraryItem,
    PoseRequest,
    PoseRequestStatusChange,
    PoseRequestVote,
    RequestStatus,
)
from posegen.db.models import Role, User, utcnow
from posegen.domain.bodies import CamelBody
from posegen.domain.pose_library import clean_text, like_pattern, require_category
from posegen.errors import Conflict, NotFound, ValidationFailed
from posegen.storage import validate_key

logger = logging.getLogger(__name__)

NOT_FOUND = "Pose request not found"
DUPLICATE = "You already have a pending request for this pose"
USE_CASE_MAX = 200
URL_MAX = 2048
NOTES_MAX = 2000

# The lifecycle: which statuses each status may move to. Everything else is a 409.
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    RequestStatus.PENDING: frozenset({RequestStatus.APPROVED, RequestStatus.REJECTED}),
    RequestStatus.APPROVED: frozenset({RequestStatus.IN_PROGRESS, RequestStatus.REJECTED}),
    RequestStatus.IN_PROGRESS: frozenset({RequestStatus.COMPLETED}),
    RequestStatus.COMPLETED: frozenset(),
    RequestStatus.REJECTED: frozenset(),
}
# How an admin action is named in messages ("Cannot approve ..."): the seed's route names.
ACTION_VERBS: dict[RequestStatus, str] = {
    RequestStatus.APPROVED: "approve",
    RequestStatus.REJECTED: "reject",
    RequestStatus.IN_PROGRESS: "mark-in-progress",
    RequestStatus.COMPLETED: "mark-completed",
}


def public_statuses() -> frozenset[RequestStatus]:
    """Statuses every seller sees: all of them, unless pre-moderation hides pending ones."""
    if get_settings().pose_requests_premoderation:
        return frozenset(set(RequestStatus) - {RequestStatus.PENDING})
    return frozenset(RequestStatus)


def board_statuses() -> tuple[RequestStatus, ...]:
    """The community board: what still takes votes and is visible to every seller."""
    return tuple(s for s in OPEN_STATUSES if s in public_statuses())


class RequestSort(StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"
    VOTES = "votes"
    # The admin queue's default: what still waits for a decision first, most voted first.
    PENDING_FIRST = "pending_first"


class PoseRequestCreate(CamelBody):
    """Body of POST /requests."""

    pose_name: str
    description: str | None = None
    reference_image_url: str | None = None
    category_id: uuid.UUID | None = None
    use_case: str | None = None

    @field_validator("pose_name")
    @classmethod
    def _pose_name(cls, value: str) -> str:
        name = clean_text(value, POSE_NAME_MAX, required=True)
        assert name is not None
        if not normalize_name(name):
            raise ValueError("must contain letters or digits")
        return name

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return clean_text(value, DESCRIPTION_MAX)

    @field_validator("use_case")
    @classmethod
    def _use_case(cls, value: str | None) -> str | None:
        return clean_text(value, USE_CASE_MAX)

    @field_validator("reference_image_url")
    @classmethod
    def _reference_image_url(cls, value: str | None) -> str | None:
        # An http(s) URL is stored and shown as a link only, never fetched by us (no SSRF
        # guard needed); an uploads/ key is the requester's own picture from POST /uploads.
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value.startswith("uploads/"):
            try:
                return validate_key(value)
            except ValidationFailed as exc:
                raise ValueError(exc.message) from None
        if len(value) > URL_MAX:
            raise ValueError(f"must be at most {URL_MAX} characters")
        if not re.match(r"^https?://[^\s/]+\.[^\s]*$", value):
            raise ValueError(
                "must be an uploads/ key from POST /uploads or an http(s) URL such as "
                "https://example.com/pose.jpg"
            )
        return value


class AdminAction(CamelBody):
    """Body of approve / reject / mark-in-progress: optional notes (reject requires them)."""

    admin_notes: str | None = None

    @field_validator("admin_notes")
    @classmethod
    def _notes(cls, value: str | None) -> str | None:
        return clean_text(value, NOTES_MAX)


class NotesUpdate(AdminAction):
    """Body of PUT …/notes: the new notes; null or blank clears them."""


class CompleteAction(AdminAction):
    """Body of mark-completed: the library pose that answers the request (the seed's name)."""

    completed_pose_id: uuid.UUID | None = None


@dataclass(frozen=True)
class VoteState:
    request_id: uuid.UUID
    votes_count: int
    has_voted: bool


@dataclass(frozen=True)
class StatusChange:
    """What an admin action did: recorded in history and announced as an event."""

    request_id: uuid.UUID
    requester_id: uuid.UUID
    from_status: RequestStatus
    to_status: RequestStatus
    admin_id: uuid.UUID
    notes: str | None


def normalize_name(name: str) -> str:
    """What makes two names the same request: case, accents' forms, punctuation and spacing."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", folded).split())


# -- users -------------------------------------------------------------------------------------


def create_request(session: Session, user: User, body: PoseRequestCreate) -> PoseRequest:
    """A new pending request; a second open one with the same normalized name is a 409."""
    require_category(session, body.category_id)
    reference = body.reference_image_url
    if reference and reference.startswith("uploads/") and not is_own_upload(reference, user.id):
        raise ValidationFailed(
            "referenceImageUrl: not one of your uploads", field="referenceImageUrl"
        )
    normalized = normalize_name(body.pose_name)
    if _open_duplicate_exists(session, user.id, normalized):
        raise Conflict(DUPLICATE)
    request = PoseRequest(
        id=uuid.uuid4(),
        user_id=user.id,
        pose_name=body.pose_name,
        normalized_name=normalized,
        description=body.description,
        reference_image_url=body.reference_image_url,
        category_id=body.category_id,
        use_case=body.use_case,
        votes_count=0,
        status=RequestStatus.PENDING,
    )
    session.add(request)
    try:
        session.commit()
    except IntegrityError:
        # A concurrent twin won the partial unique index.
        session.rollback()
        raise Conflict(DUPLICATE) from None
    return request


def _open_duplicate_exists(session: Session, user_id: uuid.UUID, normalized: str) -> bool:
    found = session.scalar(
        select(PoseRequest.id).where(
            PoseRequest.user_id == user_id,
            PoseRequest.normalized_name == normalized,
            PoseRequest.status.in_(OPEN_STATUSES),
        )
    )
    return found is not None


def is_own_upload(key: str, user_id: uuid.UUID) -> bool:
    return key.startswith(f"uploads/{user_id}/")


def reference_image_readable(session: Session, user: User, key: str) -> bool:
    """Whoever may see a request may see its reference picture (an uploads/ key of its author)."""
    requests = session.scalars(select(PoseRequest).where(PoseRequest.reference_image_url == key))
    return any(_visible(request, user) for request in requests)


def get_visible_request(session: Session, user: User, request_id: uuid.UUID) -> PoseRequest:
    """A request the user may see: their own, any public one, or anything for an admin."""
    request = session.get(PoseRequest, request_id)
    if request is None or not _visible(request, user):
        raise NotFound(NOT_FOUND)
    return request


def _visible(request: PoseRequest, user: User) -> bool:
    return (
        request.user_id == user.id or request.status in public_statuses() or user.role == Role.ADMIN
    )


def delete_own_request(session: Session, user: User, request_id: uuid.UUID) -> None:
    """Authors may withdraw a request while nobody has acted on it (pending only)."""
    deleted = session.execute(
        delete(PoseRequest).where(
            PoseRequest.id == request_id,
            PoseRequest.user_id == user.id,
            PoseRequest.status == RequestStatus.PENDING,
        )
    ).rowcount
    if deleted:
        session.commit()
        return
    session.rollback()
    request = session.get(PoseRequest, request_id)
    if request is None or request.user_id != user.id:
        raise NotFound(NOT_FOUND)
    raise Conflict(
        f"Only pending requests can be deleted; this request is {request.status}.",
        currentStatus=request.status,
    )


def list_own_requests(
    session: Session,
    user_id: uuid.UUID,
    *,
    status: RequestStatus | None,
    search: str | None,
    sort: RequestSort,
    offset: int,
    limit: int,
) -> tuple[list[PoseRequest], int]:
    query = select(PoseRequest).where(PoseRequest.user_id == user_id)
    return _page(session, _by_status_and_name(query, status, search), sort, offset, limit)


def list_board_requests(
    session: Session,
    user: User,
    *,
    status: RequestStatus | None,
    search: str | None,
    sort: RequestSort,
    offset: int,
    limit: int,
) -> tuple[list[PoseRequest], int]:
    """The community board: every request this seller may see, everyone's."""
    visible = sorted(public_statuses())
    query = select(PoseRequest).where(
        or_(PoseRequest.status.in_(visible), PoseRequest.user_id == user.id)
    )
    return _page(session, _by_status_and_name(query, status, search), sort, offset, limit)


def _by_status_and_name(
    query: Select[tuple[PoseRequest]], status: RequestStatus | None, search: str | None
) -> Select[tuple[PoseRequest]]:
    if status is not None:
        query = query.where(PoseRequest.status == status)
    if search and search.strip():
        query = query.where(PoseRequest.pose_name.ilike(like_pattern(search), escape="\\"))
    return query


def list_all_requests(
    session: Session,
    *,
    status: RequestStatus | None,
    category_id: uuid.UUID | None,
    user_id: uuid.UUID | None = None,
    search: str | None,
    sort: RequestSort,
    offset: int,
    limit: int,
) -> tuple[list[PoseRequest], int]:
    """The admin queue; search also looks at descriptions, where requesters explain."""
    query = select(PoseRequest)
    if status is not None:
        query = query.where(PoseRequest.status == status)
    if category_id is not None:
        query = query.where(PoseRequest.category_id == category_id)
    if user_id is not None:
        query = query.where(PoseRequest.user_id == user_id)
    if search and search.strip():
        pattern = like_pattern(search)
        query = query.where(
            or_(
                PoseRequest.pose_name.ilike(pattern, escape="\\"),
                PoseRequest.description.ilike(pattern, escape="\\"),
            )
        )
    return _page(session, query, sort, offset, limit)


def popular_requests(
    session: Session, limit: int, statuses: tuple[RequestStatus, ...] | None = None
) -> list[PoseRequest]:
    """Most voted first among `statuses` (default: the community board's)."""
    chosen = board_statuses() if statuses is None else statuses
    query = select(PoseRequest).where(PoseRequest.status.in_(chosen))
    return list(session.scalars(_ordered(query, RequestSort.VOTES).limit(limit)))


def voted_request_ids(
    session: Session, user_id: uuid.UUID, request_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these requests the user has voted on (one query for a whole page)."""
    if not request_ids:
        return set()
    rows = session.scalars(
        select(PoseRequestVote.request_id).where(
            PoseRequestVote.user_id == user_id, PoseRequestVote.request_id.in_(request_ids)
        )
    )
    return set(rows)


def _ordered(query: Select[tuple[PoseRequest]], sort: RequestSort) -> Select[tuple[PoseRequest]]:
    # The id makes the order total, so pages never repeat or skip a row.
    if sort == RequestSort.VOTES:
        return query.order_by(
            PoseRequest.votes_count.desc(), PoseRequest.created_at.desc(), PoseRequest.id
        )
    if sort == RequestSort.PENDING_FIRST:
        waiting = case((PoseRequest.status == RequestStatus.PENDING, 0), else_=1)
        return query.order_by(
            waiting, PoseRequest.votes_count.desc(), PoseRequest.created_at.desc(), PoseRequest.id
        )
    if sort == RequestSort.OLDEST:
        return query.order_by(PoseRequest.created_at.asc(), PoseRequest.id)
    return query.order_by(PoseRequest.created_at.desc(), PoseRequest.id)


def _page(
    session: Session,
    query: Select[tuple[PoseRequest]],
    sort: RequestSort,
    offset: int,
    limit: int,
) -> tuple[list[PoseRequest], int]:
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(_ordered(query, sort).offset(offset).limit(limit))
    return list(items), total


# -- votes -------------------------------------------------------------------------------------


def vote(session: Session, user: User, request_id: uuid.UUID) -> VoteState:
    """One vote per user; voting again changes nothing. Only open requests take votes.

    The counter moves only when this call really inserted the row, in the same transaction,
    by `votes_count + 1` under the row lock; so it equals the rows under any concurrency.
    """
    _require_votable(session, user, request_id)
    try:
        inserted = _insert_vote_if_absent(session, request_id, user.id)
    except IntegrityError:
        session.rollback()  # the request was deleted meanwhile
        raise NotFound(NOT_FOUND) from None
    if inserted:
        count = _bump_votes(session, request_id, +1)
        if count is None:
            session.rollback()
            _require_votable(session, user, request_id)  # raises: it closed meanwhile
            raise Conflict("Votes are closed for this request.")
    else:
        count = _votes_count(session, request_id)
    session.commit()
    return VoteState(request_id, count, has_voted=True)


def unvote(session: Session, user: User, request_id: uuid.UUID) -> VoteState:
    """Take a vote back; without a vote this changes nothing. Closed requests keep their count."""
    _require_votable(session, user, request_id)
    removed = session.scalar(
        delete(PoseRequestVote)
        .where(PoseRequestVote.request_id == request_id, PoseRequestVote.user_id == user.id)
        .returning(PoseRequestVote.user_id)
    )
    if removed is not None:
        count = _bump_votes(session, request_id, -1)
        if count is None:
            session.rollback()
            _require_votable(session, user, request_id)
            raise Conflict("Votes are closed for this request.")
    else:
        count = _votes_count(session, request_id)
    session.commit()
    return VoteState(request_id, count, has_voted=False)


def _require_votable(session: Session, user: User, request_id: uuid.UUID) -> None:
    request = get_visible_request(session, user, request_id)
    session.refresh(request)  # the identity map may hold a status from before a rollback
    if request.status not in OPEN_STATUSES:
        raise Conflict(
            f"Votes are closed: this request is {request.status}. "
            "Only pending, approved and in-progress requests take votes.",
            currentStatus=request.status,
        )


def _insert_vote_if_absent(session: Session, request_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """INSERT … ON CONFLICT DO NOTHING: True when this call created the vote.

    No savepoint and no exception on a repeated vote, so the transaction stays usable.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - posegen runs on SQLite and PostgreSQL only
        raise NotImplementedError(dialect)
    statement = (
        insert(PoseRequestVote)
        .values(request_id=request_id, user_id=user_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["request_id", "user_id"])
        # RETURNING, not rowcount: an ORM-enabled INSERT does not report rowcount reliably.
        .returning(PoseRequestVote.user_id)
    )
    return session.scalar(statement) is not None


def _bump_votes(session: Session, request_id: uuid.UUID, delta: int) -> int | None:
    """Move the counter by one, only while the request is open; None when it is not."""
    return session.scalar(
        update(PoseRequest)
        .where(PoseRequest.id == request_id, PoseRequest.status.in_(OPEN_STATUSES))
        # Keep updated_at: a vote is not an edit of the request.
        .values(votes_count=PoseRequest.votes_count + delta, updated_at=PoseRequest.updated_at)
        .returning(PoseRequest.votes_count)
    )


def _votes_count(session: Session, request_id: uuid.UUID) -> int:
    return session.scalar(select(PoseRequest.votes_count).where(PoseRequest.id == request_id)) or 0


# -- admin -------------------------------------------------------------------------------------


def get_request(session: Session, request_id: uuid.UUID) -> PoseRequest:
    request = session.get(PoseRequest, request_id)
    if request is None:
        raise NotFound(NOT_FOUND)
    return request


def history(session: Session, request_id: uuid.UUID) -> list[PoseRequestStatusChange]:
    return list(
        session.scalars(
            select(PoseRequestStatusChange)
            .where(PoseRequestStatusChange.request_id == request_id)
            .order_by(PoseRequestStatusChange.created_at, PoseRequestStatusChange.id)
        )
    )


def change_status(
    session: Session,
    admin: User,
    request_id: uuid.UUID,
    target: RequestStatus,
    action: AdminAction,
) -> StatusChange:
    """Move a request along TRANSITIONS, record the history row, return what happened.

    The UPDATE is conditional on the status we checked, so two admins acting at once cannot
    both succeed from the same status; the loser gets the 409 naming the new status.
    """
    request = get_request(session, request_id)
    notes = action.admin_notes
    values: dict[str, Any] = {"status": target}
    if notes is not None:
        values["admin_notes"] = notes
    if target == RequestStatus.REJECTED and notes is None:
        raise ValidationFailed(
            "adminNotes: say why the request is rejected (required when rejecting)",
            field="adminNotes",
        )
    if target == RequestStatus.COMPLETED:
        values["completed_pose_id"] = _completing_pose(session, action)
    current = RequestStatus(request.status)
    _require_transition(current, target)
    changed = session.execute(
        update(PoseRequest)
        .where(PoseRequest.id == request_id, PoseRequest.status == current)
        .values(**values)
    ).rowcount
    if not changed:
        session.rollback()
        session.refresh(request)
        _require_transition(RequestStatus(request.status), target)
        raise Conflict(
            f"This request became {request.status} meanwhile; review it and try again.",
            currentStatus=request.status,
            targetStatus=target,
        )
    session.add(
        PoseRequestStatusChange(
            id=uuid.uuid4(),
            request_id=request_id,
            from_status=current,
            to_status=target,
            admin_id=admin.id,
            notes=notes,
        )
    )
    session.commit()
    return StatusChange(request_id, request.user_id, current, target, admin.id, notes)


def _require_transition(current: RequestStatus, target: RequestStatus) -> None:
    if target in TRANSITIONS[current]:
        return
    verb = ACTION_VERBS[target]
    if current == target:
        message = f"Cannot {verb} this request: it is already {current}."
    else:
        allowed = ", ".join(sorted(ACTION_VERBS[s] for s in TRANSITIONS[current])) or "nothing"
        message = (
            f"Cannot {verb} this request: it is {current} (from {current} an admin can: {allowed})."
        )
    raise Conflict(message, currentStatus=current, targetStatus=target)


def _completing_pose(session: Session, action: AdminAction) -> uuid.UUID:
    pose_id = getattr(action, "completed_pose_id", None)
    if pose_id is None:
        raise ValidationFailed(
            "completedPoseId: the library pose that answers the request is required",
            field="completedPoseId",
        )
    if session.get(PoseLibraryItem, pose_id) is None:
        raise ValidationFailed(
            "completedPoseId: no pose with this id in the library",
            field="completedPoseId",
            value=str(pose_id),
        )
    return pose_id


def update_admin_notes(session: Session, request_id: uuid.UUID, body: NotesUpdate) -> PoseRequest:
    request = get_request(session, request_id)
    request.admin_notes = body.admin_notes
    session.commit()
    return request


def delete_request(session: Session, request_id: uuid.UUID) -> None:
    """Admins may delete any request (spam, abuse); votes and history go with it."""
    deleted = session.execute(delete(PoseRequest).where(PoseRequest.id == request_id)).rowcount
    if not deleted:
        session.rollback()
        raise NotFound(NOT_FOUND)
    session.commit()


def announce_status_change(change: StatusChange) -> None:
    """Emit `posegen.pose-request.status-changed` so the requester can be told.

    Best effort by design: the status change is committed already, and a Prefect outage must
    not turn the admin's successful action into an error. Without PREFECT_API_URL Prefect
    would start a temporary server in this process, so then the event is only logged.
    """
    try:
        from prefect.settings import PREFECT_API_URL

        from posegen.events import emit_pose_request_status_changed

        if not PREFECT_API_URL.value():
            logger.info("PREFECT_API_URL not set; not emitting %s", change)
            return
        emit_pose_request_status_changed(
            request_id=change.request_id,
            requester_id=change.requester_id,
            from_status=change.from_status.value,
            to_status=change.to_status.value,
            notes=change.notes,
            admin_id=change.admin_id,
        )
    except Exception:
        logger.exception("Could not emit the status-change event for %s", change.request_id)
