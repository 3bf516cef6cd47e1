"""Response bodies: the JSON shapes clients rely on (camelCase), built from models and storage.

Storage keys never leave the API as keys (except an upload's own): every image is a URL from
`Storage.client_url`, so clients work the same against local storage and S3.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from posegen.db import models
from posegen.domain.background import ChangeTicket
from posegen.domain.poses import GenerationSummary as _GenerationRow
from posegen.storage import Storage

# The OpenAPI `date-time` format (RFC 3339) requires the offset.
UtcDatetime = Annotated[datetime, AfterValidator(models.as_utc)]


class CamelResponse(BaseModel):
    """Base of every response body: camelCase out, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class PoseOut(CamelResponse):
    id: uuid.UUID
    generation_id: uuid.UUID
    image_url: str
    original_image_url: str
    status: str
    error_message: str | None
    background_changed: bool
    background_mode: str | None
    background_prompt: str | None
    background_color: str | None
    export_formats: dict[str, str]
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def of(cls, pose: models.Pose, storage: Storage) -> PoseOut:
        return cls(
            id=pose.id,
            generation_id=pose.generation_id,
            image_url=storage.client_url(pose.image_key),
            original_image_url=storage.client_url(pose.original_image_key),
            status=pose.status,
            error_message=pose.error_message,
            background_changed=pose.background_changed,
            background_mode=pose.background_mode,
            background_prompt=pose.background_prompt,
            background_color=pose.background_color,
            export_formats={
                name: storage.client_url(key) for name, key in (pose.export_formats or {}).items()
            },
            created_at=pose.created_at,
            updated_at=pose.updated_at,
        )


class GenerationOut(CamelResponse):
    id: uuid.UUID
    project_id: uuid.UUID | None
    status: str
    poses: list[PoseOut]
    created_at: UtcDatetime

    @classmethod
    def of(cls, generation: models.Generation, storage: Storage) -> GenerationOut:
        return cls(
            id=generation.id,
            project_id=generation.project_id,
            status=generation.status,
            poses=[PoseOut.of(pose, storage) for pose in generation.poses],
            created_at=generation.created_at,
        )


class GenerationSummary(CamelResponse):
    """A row of `GET /generations`: enough for a thumbnail grid."""

    id: uuid.UUID
    project_id: uuid.UUID | None
    status: str
    pose_count: int
    cover_url: str | None
    created_at: UtcDatetime

    @classmethod
    def of(cls, row: _GenerationRow, storage: Storage) -> GenerationSummary:
        return cls(
            id=row.generation.id,
            project_id=row.generation.project_id,
            status=row.generation.status,
            pose_count=row.pose_count,
            cover_url=storage.client_url(row.cover_key) if row.cover_key else None,
            created_at=row.generation.created_at,
        )


class ProjectOut(CamelResponse):
    id: uuid.UUID
    name: str
    description: str | None
    generation_count: int
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def of(cls, project: models.Project, generation_count: int) -> ProjectOut:
        return cls(
            id=project.id,
            name=project.name,
            description=project.description,
            generation_count=generation_count,
            created_at=project.created_at,
            updated_at=project.updated_at,
        )


class ProjectDetailOut(ProjectOut):
    generations: list[GenerationSummary]

    @classmethod
    def of(  # type: ignore[override]
        cls, project: models.Project, generations: list[GenerationSummary], total: int
    ) -> ProjectDetailOut:
        base = ProjectOut.of(project, total)
        return cls(**base.model_dump(), generations=generations)


class Me(CamelResponse):
    id: uuid.UUID
    email: str
    role: str
    credits: int
    enterprise_unlimited: bool

    @classmethod
    def of(cls, user: models.User) -> Me:
        return cls(
            id=user.id,
            email=user.email,
            role=user.role,
            credits=user.credits,
            enterprise_unlimited=user.enterprise_unlimited,
        )


class BackgroundChangeAccepted(CamelResponse):
    """The 202 answer: where the result will appear and what it cost; events say when."""

    pose_id: uuid.UUID
    output_image_url: str
    credit_charged: int
    credit_balance: int
    flow_run_id: uuid.UUID

    @classmethod
    def of(
        cls, ticket: ChangeTicket, flow_run_id: uuid.UUID, storage: Storage
    ) -> BackgroundChangeAccepted:
        return cls(
            pose_id=ticket.pose_id,
            output_image_url=storage.client_url(ticket.output_key),
            credit_charged=ticket.credit_charged,
            credit_balance=ticket.credit_balance,
            flow_run_id=flow_run_id,
        )


class Upload(CamelResponse):
    """`key` is what a background change takes as `backgroundImageUrl`; `url` fetches it."""

    key: str
    url: str
    width: int
    height: int
    content_type: str
    size: int
