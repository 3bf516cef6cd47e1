"""List pagination for every router: the `page`/`limit` query parameters and the response shape.

A list route takes `page: Page`, passes `page.offset` and `page.limit` to the domain, and returns
`paginated(items, page, total)` → `{items, pagination: {page, limit, total, totalPages}}`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from posegen.api.schemas import CamelResponse

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
# Far past the end of any real list; keeps OFFSET a 64-bit integer on SQLite and PostgreSQL,
# where a client's page=10**18 would otherwise overflow the driver (a 500, not a 400).
MAX_PAGE = 1_000_000

T = TypeVar("T")


@dataclass(frozen=True)
class PageParams:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def page_params(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")] = 1,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"items per page (at most {MAX_LIMIT})")
    ] = DEFAULT_LIMIT,
) -> PageParams:
    return PageParams(page=page, limit=limit)


Page = Annotated[PageParams, Depends(page_params)]


class Pagination(CamelResponse):
    page: int
    limit: int
    total: int
    total_pages: int


class Paginated(BaseModel, Generic[T]):
    """Response model of a list route: `response_model=Paginated[schemas.Thing]`."""

    items: list[T]
    pagination: Pagination


def paginated(items: Sequence[T], page: PageParams, total: int) -> Paginated[T]:
    """`totalPages` is 0 for an empty list, so `page > totalPages` always means past the end."""
    return Paginated(
        items=list(items),
        pagination=Pagination(
            page=page.page,
            limit=page.limit,
            total=total,
            total_pages=math.ceil(total / page.limit),
        ),
    )
