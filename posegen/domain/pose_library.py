"""The pose library and its categories: what exists to pick from, and what completes a request."""

from __future__ import annotations

import uuid

from pydantic import field_validator
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from posegen.db.community import DESCRIPTION_MAX, POSE_NAME_MAX, PoseCategory, PoseLibraryItem
from posegen.domain.bodies import CamelBody
from posegen.errors import Conflict, NotFound, ValidationFailed
from posegen.storage import validate_key

CATEGORY_NAME_MAX = 60


def clean_text(value: str | None, max_length: int, *, required: bool = False) -> str | None:
    """Collapse whitespace; blank means absent. Messages name no field: the API prefixes it."""
    if value is None:
        if required:
            raise ValueError("is required")
        return None
    value = " ".join(value.split())
    if not value:
        if required:
            raise ValueError("must not be empty")
        return None
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters (got {len(value)})")
    return value


def like_pattern(term: str) -> str:
    """A case-insensitive substring pattern with LIKE's wildcards escaped (escape char `\\`)."""
    escaped = term.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class CategoryCreate(CamelBody):
    """Body of POST /admin/categories."""

    name: str
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return clean_text(value, CATEGORY_NAME_MAX, required=True)  # type: ignore[return-value]

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return clean_text(value, DESCRIPTION_MAX)


class LibraryItemCreate(CamelBody):
    """Body of POST /admin/library; `imageKey` is a storage key (e.g. from the upload endpoint)."""

    name: str
    description: str | None = None
    category_id: uuid.UUID | None = None
    image_key: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return clean_text(value, POSE_NAME_MAX, required=True)  # type: ignore[return-value]

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return clean_text(value, DESCRIPTION_MAX)

    @field_validator("image_key")
    @classmethod
    def _image_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_key(value.strip())
        except ValidationFailed as exc:
            raise ValueError(exc.message) from None


def create_category(session: Session, body: CategoryCreate) -> PoseCategory:
    category = PoseCategory(id=uuid.uuid4(), name=body.name, description=body.description)
    session.add(category)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"A category named {body.name!r} already exists") from None
    return category


def list_categories(session: Session) -> list[PoseCategory]:
    return list(session.scalars(select(PoseCategory).order_by(PoseCategory.name)))


def require_category(session: Session, category_id: uuid.UUID | None) -> None:
    """A body's categoryId must name a category: a 400 on that field, not a 404 on the URL."""
    if category_id is not None and session.get(PoseCategory, category_id) is None:
        raise ValidationFailed(
            "categoryId: no category with this id", field="categoryId", value=str(category_id)
        )


def category_names(session: Session, ids: set[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(PoseCategory.id, PoseCategory.name).where(PoseCategory.id.in_(wanted))
    )
    return {category_id: name for category_id, name in rows}


def create_library_item(session: Session, body: LibraryItemCreate) -> PoseLibraryItem:
    require_category(session, body.category_id)
    item = PoseLibraryItem(
        id=uuid.uuid4(),
        name=body.name,
        description=body.description,
        category_id=body.category_id,
        image_key=body.image_key,
    )
    session.add(item)
    session.commit()
    return item


def get_library_item(session: Session, item_id: uuid.UUID) -> PoseLibraryItem:
    item = session.get(PoseLibraryItem, item_id)
    if item is None:
        raise NotFound("Pose not found in the library")
    return item


def is_library_image(session: Session, key: str) -> bool:
    """A library pose's picture: every signed-in user may see it (the library is for all)."""
    found = session.scalar(select(PoseLibraryItem.id).where(PoseLibraryItem.image_key == key))
    return found is not None


def list_library(
    session: Session,
    *,
    category_id: uuid.UUID | None,
    search: str | None,
    offset: int,
    limit: int,
) -> tuple[list[PoseLibraryItem], int]:
    query: Select[tuple[PoseLibraryItem]] = select(PoseLibraryItem)
    if category_id is not None:
        query = query.where(PoseLibraryItem.category_id == category_id)
    if search and search.strip():
        query = query.where(PoseLibraryItem.name.ilike(like_pattern(search), escape="\\"))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(PoseLibraryItem.name, PoseLibraryItem.id).offset(offset).limit(limit)
    )
    return list(items), total
