"""Run a background change in this process (CLI and demo), without a served deployment.

The flow still talks to a Prefect API: the one in PREFECT_API_URL, or a temporary local one
Prefect starts by itself when none is set.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from posegen.db.models import Generation, Pose
from posegen.db.session import session_scope
from posegen.domain.background import BackgroundChange
from posegen.errors import NotFound, PosegenError, ServiceUnavailable, ValidationFailed
from posegen.imaging.decoding import open_image
from posegen.imaging.encoding import encode_png
from posegen.storage import Storage, get_storage

console = Console(stderr=True)


@dataclass(frozen=True)
class LocalChangeResult:
    output_key: str
    balance: int


def store_upload(storage: Storage, user_id: uuid.UUID, path: Path) -> str:
    """Decode, re-encode and store a local backdrop file as the user's upload."""
    key = f"uploads/{user_id}/{uuid.uuid4()}.png"
    storage.write_bytes(key, encode_png(open_image(path.read_bytes())), content_type="image/png")
    return key


def build_change(
    *, color: str | None, prompt: str | None, upload_key: str | None
) -> BackgroundChange:
    mode = "solid_color" if color else "ai_generate" if prompt else "upload"
    try:
        return BackgroundChange(
            background_mode=mode,
            background_color=color,
            background_prompt=prompt,
            background_image_url=upload_key,
        )
    except ValidationError as exc:
        raise ValidationFailed(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


async def run_background_change(
    pose_id: uuid.UUID,
    *,
    color: str | None = None,
    prompt: str | None = None,
    image: Path | None = None,
) -> LocalChangeResult:
    """Charge the pose's owner, run the flow here and return the output key and new balance."""
    from flows.background_change import background_change
    from posegen.config import get_settings
    from posegen.domain.credits import balance

    with session_scope() as session:
        pose = session.get(Pose, pose_id)
        if pose is None:
            raise NotFound("Pose not found")
        generation = session.get(Generation, pose.generation_id)
        assert generation is not None
        user_id = generation.user_id
    upload_key = store_upload(get_storage(), user_id, image) if image else None
    change = build_change(color=color, prompt=prompt, upload_key=upload_key)
    if change.background_mode == "ai_generate" and get_settings().flux_api_key is None:
        raise ServiceUnavailable("AI background generation needs POSEGEN_FLUX_API_KEY")
    console.print(f"changing the background of pose {pose_id} ({change.background_mode})")
    state = await background_change(pose_id, user_id, uuid.uuid4(), change, return_state=True)
    with session_scope() as session:
        pose = session.get(Pose, pose_id)
        assert pose is not None
        current = balance(session, user_id)
        if not state.is_completed():
            raise PosegenError(pose.error_message or "The background change failed")
        return LocalChangeResult(output_key=pose.image_key, balance=current)
