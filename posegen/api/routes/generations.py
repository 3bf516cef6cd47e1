"""GET /generations/{id}: a generation and its poses, for its owner only."""

from __future__ import annotations

from fastapi import APIRouter

from posegen.api import schemas
from posegen.api.deps import CurrentUser, SessionDep, StorageDep, parse_id
from posegen.domain.poses import get_owned_generation

router = APIRouter(tags=["generations"])

_NOT_FOUND = "Generation not found"


@router.get("/generations/{generation_id}", response_model=schemas.GenerationOut)
def read_generation(
    generation_id: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> schemas.GenerationOut:
    generation = get_owned_generation(session, user.id, parse_id(generation_id, _NOT_FOUND))
    return schemas.GenerationOut.of(generation, storage)
