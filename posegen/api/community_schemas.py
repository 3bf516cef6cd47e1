"""Response bodies of the community routes (pose requests, votes, library, stats), camelCase.

Lists are shaped with two batched look-ups (category names, the viewer's votes) per page,
never one query per row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from posegen.api.schemas import CamelResponse, UtcDatetime
from posegen.db import community
from posegen.db.models import User
from posegen.domain.pose_library import category_names
from posegen.domain.pose_requests import VoteState, voted_request_ids
from posegen.storage import Storage, get_storage


class PoseRequestOut(CamelResponse):
    id: uuid.UUID
    user_id: uuid.UUID
    pose_name: str
    description: str | None
    reference_image_url: str | None
    category_id: uuid.UUID | None
    category_name: str | None
    use_case: str | None
    votes_count: int
    status: str
    admin_notes: str | None
    completed_pose_id: uuid.UUID | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    has_voted: bool

    @classmethod
    def of(
        cls,
        request: community.PoseRequest,
        names: dict[uuid.UUID, str],
        voted: set[uuid.UUID],
    ) -> PoseRequestOut:
        return cls(
            id=request.id,
            user_id=request.user_id,
            pose_name=request.pose_name,
            description=request.description,
            reference_image_url=_reference_url(request.reference_image_url),
            category_id=request.category_id,
            category_name=names.get(request.category_id) if request.category_id else None,
            use_case=request.use_case,
            votes_count=request.votes_count,
            status=request.status,
            admin_notes=request.admin_notes,
            completed_pose_id=request.completed_pose_id,
            created_at=request.created_at,
            updated_at=request.updated_at,
            has_voted=request.id in voted,
        )


class AdminPoseRequestOut(PoseRequestOut):
    requester_email: str | None


class StatusChangeOut(CamelResponse):
    id: uuid.UUID
    from_status: str
    to_status: str
    admin_id: uuid.UUID | None
    notes: str | None
    created_at: UtcDatetime

    @classmethod
    def of(cls, change: community.PoseRequestStatusChange) -> StatusChangeOut:
        return cls(
            id=change.id,
            from_status=change.from_status,
            to_status=change.to_status,
            admin_id=change.admin_id,
            notes=change.notes,
            created_at=change.created_at,
        )


class AdminPoseRequestDetailOut(AdminPoseRequestOut):
    history: list[StatusChangeOut]


class PoseRequestList(CamelResponse):
    items: list[PoseRequestOut]


class AdminPoseRequestList(CamelResponse):
    items: list[AdminPoseRequestOut]


class CreatedPoseRequest(CamelResponse):
    """POST /requests answers `{"request": {...}}`, as the seed's clients read it."""

    request: PoseRequestOut


class Vote(CamelResponse):
    request_id: uuid.UUID
    votes_count: int
    has_voted: bool

    @classmethod
    def of(cls, state: VoteState) -> Vote:
        return cls(
            request_id=state.request_id, votes_count=state.votes_count, has_voted=state.has_voted
        )


class CategoryOut(CamelResponse):
    id: uuid.UUID
    name: str
    description: str | None
    created_at: UtcDatetime

    @classmethod
    def of(cls, category: community.PoseCategory) -> CategoryOut:
        return cls(
            id=category.id,
            name=category.name,
            description=category.description,
            created_at=category.created_at,
        )


class CategoryList(CamelResponse):
    items: list[CategoryOut]


class LibraryItem(CamelResponse):
    id: uuid.UUID
    name: str
    description: str | None
    category_id: uuid.UUID | None
    category_name: str | None
    image_url: str | None
    created_at: UtcDatetime

    @classmethod
    def of(
        cls, item: community.PoseLibraryItem, names: dict[uuid.UUID, str], storage: Storage
    ) -> LibraryItem:
        return cls(
            id=item.id,
            name=item.name,
            description=item.description,
            category_id=item.category_id,
            category_name=names.get(item.category_id) if item.category_id else None,
            image_url=storage.client_url(item.image_key) if item.image_key else None,
            created_at=item.created_at,
        )


class StatsSnapshot(CamelResponse):
    id: uuid.UUID
    created_at: UtcDatetime
    flow_run_id: uuid.UUID | None
    stats: dict[str, Any]

    @classmethod
    def of(cls, snapshot: community.PoseRequestStatsSnapshot) -> StatsSnapshot:
        return cls(
            id=snapshot.id,
            created_at=snapshot.created_at,
            flow_run_id=snapshot.flow_run_id,
            stats=snapshot.stats,
        )


def _reference_url(value: str | None) -> str | None:
    """An uploaded reference is stored as its key and shown as a URL the client can fetch."""
    if value is not None and value.startswith("uploads/"):
        return get_storage().client_url(value)
    return value


def pose_requests(
    session: Session, viewer: User, requests: Sequence[community.PoseRequest]
) -> list[PoseRequestOut]:
    names = category_names(session, {r.category_id for r in requests})
    voted = voted_request_ids(session, viewer.id, [r.id for r in requests])
    return [PoseRequestOut.of(r, names, voted) for r in requests]


def admin_pose_requests(
    session: Session, admin: User, requests: Sequence[community.PoseRequest]
) -> list[AdminPoseRequestOut]:
    emails = _emails(session, {r.user_id for r in requests})
    return [
        AdminPoseRequestOut(**shaped.model_dump(), requester_email=emails.get(shaped.user_id))
        for shaped in pose_requests(session, admin, requests)
    ]


def admin_pose_request_detail(
    session: Session,
    admin: User,
    request: community.PoseRequest,
    changes: Sequence[community.PoseRequestStatusChange],
) -> AdminPoseRequestDetailOut:
    (shaped,) = admin_pose_requests(session, admin, [request])
    return AdminPoseRequestDetailOut(
        **shaped.model_dump(), history=[StatusChangeOut.of(c) for c in changes]
    )


def library_items(
    session: Session, items: Sequence[community.PoseLibraryItem], storage: Storage
) -> list[LibraryItem]:
    names = category_names(session, {item.category_id for item in items})
    return [LibraryItem.of(item, names, storage) for item in items]


def _emails(session: Session, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not user_ids:
        return {}
    return dict(session.execute(select(User.id, User.email).where(User.id.in_(user_ids))).all())
