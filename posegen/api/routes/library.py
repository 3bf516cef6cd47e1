"""The pose library and categories: browse them; admins add to them (to complete requests)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from posegen.api import community_schemas as schemas
from posegen.api.deps import AdminUser, CurrentUser, SessionDep, StorageDep, parse_id
from posegen.api.pagination import Page, Paginated, paginated
from posegen.domain import pose_library as domain
from posegen.domain.pose_library import CategoryCreate, LibraryItemCreate

router = APIRouter(tags=["pose library"])


@router.get("/library", response_model=Paginated[schemas.LibraryItem])
def list_library(
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    page: Page,
    category_id: Annotated[uuid.UUID | None, Query(alias="categoryId")] = None,
    search: Annotated[str | None, Query(max_length=100)] = None,
) -> Paginated[schemas.LibraryItem]:
    items, total = domain.list_library(
        session, category_id=category_id, search=search, offset=page.offset, limit=page.limit
    )
    return paginated(schemas.library_items(session, items, storage), page, total)


@router.get("/library/{pose_id}", response_model=schemas.LibraryItem)
def read_library_item(
    pose_id: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> schemas.LibraryItem:
    item = domain.get_library_item(session, parse_id(pose_id, "Pose not found in the library"))
    return schemas.library_items(session, [item], storage)[0]


@router.get("/categories", response_model=schemas.CategoryList)
def list_categories(user: CurrentUser, session: SessionDep) -> schemas.CategoryList:
    return schemas.CategoryList(
        items=[schemas.CategoryOut.of(c) for c in domain.list_categories(session)]
    )


@router.post("/admin/categories", status_code=201, response_model=schemas.CategoryOut)
def create_category(
    body: CategoryCreate, admin: AdminUser, session: SessionDep
) -> schemas.CategoryOut:
    """409 when a category with this name exists."""
    return schemas.CategoryOut.of(domain.create_category(session, body))


@router.post("/admin/library", status_code=201, response_model=schemas.LibraryItem)
def create_library_item(
    body: LibraryItemCreate, admin: AdminUser, session: SessionDep, storage: StorageDep
) -> schemas.LibraryItem:
    item = domain.create_library_item(session, body)
    return schemas.library_items(session, [item], storage)[0]
