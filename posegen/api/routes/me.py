"""GET /me: who the token belongs to and how many credits they have."""

from __future__ import annotations

from fastapi import APIRouter

from posegen.api import schemas
from posegen.api.deps import CurrentUser

router = APIRouter(tags=["me"])


@router.get("/me", response_model=schemas.Me)
def read_me(user: CurrentUser) -> schemas.Me:
    return schemas.Me.of(user)
