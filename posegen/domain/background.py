"""Background change: the request schema (shared by the API and the flow) and its lifecycle.

Lifecycle of one change: `start_change` (ownership, 409 while one runs, charge once per request)
→ the flow renders → `complete_change` or `fail_change` (refund exactly once, record the error).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import Field, field_validator, model_validator
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from posegen.config import get_settings
from posegen.db.models import CreditTransaction, Pose, PoseStatus, User
from posegen.domain import credits
from posegen.domain.bodies import CamelBody
from posegen.domain.outcomes import Outcome, record_outcome
from posegen.domain.poses import get_owned_pose
from posegen.errors import Conflict, NotFound, ValidationFailed
from posegen.storage import validate_key

PROMPT_MAX = 300
_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")
# Prompts that ask the image model for content we never put behind a customer's product photo.
FORBIDDEN_KEYWORDS = (
    "nude",
    "naked",
    "nsfw",
    "porn",
    "sexual",
    "explicit",
    "gore",
    "blood",
    "violence",
    "weapon",
    "gun",
    "drugs",
    "hate",
    "nazi",
    "terror",
)


class BackgroundMode(StrEnum):
    AI_GENERATE = "ai_generate"
    SOLID_COLOR = "solid_color"
    UPLOAD = "upload"


class BackgroundChange(CamelBody):
    """The body of POST /poses/{poseId}/background, and the flow's parameter: validated once."""

    background_mode: BackgroundMode
    background_prompt: str | None = Field(default=None, max_length=2000)
    background_color: str | None = None
    background_image_url: str | None = Field(default=None, max_length=2048)

    @field_validator("background_prompt")
    @classmethod
    def _prompt_rules(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if not value:
            raise ValueError("backgroundPrompt must not be empty")
        if len(value) > PROMPT_MAX:
            raise ValueError(f"backgroundPrompt must be at most {PROMPT_MAX} characters")
        words = set(re.findall(r"[a-z]+", _as_read(value)))
        found = sorted(word for word in FORBIDDEN_KEYWORDS if word in words)
        if found:
            raise ValueError(f"backgroundPrompt contains forbidden keywords: {', '.join(found)}")
        return value

    @field_validator("background_color")
    @classmethod
    def _color_rules(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _HEX.match(value):
            raise ValueError("backgroundColor must be a hex colour like #FF8800")
        return value.upper()

    @field_validator("background_image_url")
    @classmethod
    def _image_url_rules(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if value.startswith("https://"):
            return value
        try:
            key = validate_key(value)
        except ValidationFailed as exc:
            raise ValueError(
                "backgroundImageUrl must be an uploads/ key from the upload endpoint "
                f"or an https URL ({exc.message})"
            ) from None
        if not key.startswith("uploads/"):
            raise ValueError("backgroundImageUrl must be an uploads/ key or an https URL")
        return key

    @model_validator(mode="after")
    def _mode_needs_its_field(self) -> BackgroundChange:
        required = {
            BackgroundMode.AI_GENERATE: ("background_prompt", "backgroundPrompt"),
            BackgroundMode.SOLID_COLOR: ("background_color", "backgroundColor"),
            BackgroundMode.UPLOAD: ("background_image_url", "backgroundImageUrl"),
        }[self.background_mode]
        if getattr(self, required[0]) is None:
            raise ValueError(
                f"{required[1]} is required when backgroundMode is {self.background_mode}"
            )
        return self


def _as_read(prompt: str) -> str:
    """The prompt as the keyword check reads it, which is how an image model reads it too:
    compatibility forms folded (the fullwidth letters U+FF41.. read as a..z) and invisible format
    characters (zero-width spaces and joiners inside a word) dropped, then case-folded."""
    compatible = unicodedata.normalize("NFKC", prompt)
    return "".join(ch for ch in compatible if unicodedata.category(ch) != "Cf").casefold()


@dataclass(frozen=True)
class ChangeTicket:
    """What the caller needs after a change was accepted and paid for."""

    pose_id: uuid.UUID
    generation_id: uuid.UUID
    user_id: uuid.UUID
    request_id: uuid.UUID
    charge_key: str
    credit_charged: int
    credit_balance: int
    output_key: str
    previous_status: str
    previous_error: str | None
    newly_charged: bool


def charge_key(request_id: uuid.UUID) -> str:
    return f"background-change:{request_id}"


def output_key(pose: Pose) -> str:
    return f"poses/{pose.generation_id}/{pose.id}_bg.png"


def cost_for(user: User) -> int:
    return 0 if user.enterprise_unlimited else get_settings().background_change_cost


def check_upload_owner(change: BackgroundChange, user_id: uuid.UUID) -> None:
    """An uploads/ key must be the caller's own upload (uploads/{userId}/...)."""
    url = change.background_image_url
    own_prefix = f"uploads/{user_id}/"
    if (
        change.background_mode == BackgroundMode.UPLOAD
        and url
        and url.startswith("uploads/")
        and not url.startswith(own_prefix)
    ):
        raise ValidationFailed("backgroundImageUrl is not one of your uploads")


def start_change(
    session: Session,
    user: User,
    pose_id: uuid.UUID,
    request_id: uuid.UUID,
    change: BackgroundChange,
) -> ChangeTicket:
    """Claim the pose for this request and charge once; safe to call again with the same request.

    The claim is a conditional UPDATE, so two concurrent requests for one pose cannot both run;
    a claim older than the stale limit (a run that died unseen) may be taken over. A request
    that was already charged is not claimed or charged again: the flow re-checks the API's
    charge this way, and a client retry gets the same answer. A request whose charge was
    refunded is over: running it again would be free work, so it is refused.
    """
    check_upload_owner(change, user.id)
    pose = get_owned_pose(session, user.id, pose_id)
    key = charge_key(request_id)
    existing = credits.find_transaction(session, key)
    if existing is not None:
        if credits.is_refunded(session, existing.id):
            raise Conflict(
                "This background change already failed and was refunded; send a new request",
                poseId=str(pose_id),
            )
        if pose.change_request_id != request_id:
            raise Conflict("A newer background change for this pose took over", poseId=str(pose_id))
        return _ticket(pose, user, request_id, existing.amount, credits.balance(session, user.id))
    previous_status, previous_error = pose.status, pose.error_message
    stale = datetime.now(UTC) - timedelta(minutes=get_settings().background_change_stale_minutes)
    claimed = session.execute(
        update(Pose)
        .where(
            Pose.id == pose.id,
            or_(Pose.status != PoseStatus.PROCESSING, Pose.change_started_at < stale),
        )
        .values(
            status=PoseStatus.PROCESSING,
            change_request_id=request_id,
            change_started_at=datetime.now(UTC),
            error_message=None,
        )
        # SQLite hands back naive datetimes; don't re-evaluate the WHERE in Python.
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        session.rollback()
        raise Conflict("A background change for this pose is already running", poseId=str(pose_id))
    # The claim and the charge commit together (the charge commits): one transaction, and a
    # refused charge (InsufficientCredits) rolls the claim back with it.
    try:
        entry = credits.charge_credits(
            session,
            user.id,
            cost_for(user),
            idempotency_key=key,
            reason="background_change",
            reference=str(pose.id),
        )
    except BaseException:
        _release_claim(session, pose.id, request_id, previous_status, previous_error)
        raise
    return _ticket(
        pose,
        user,
        request_id,
        entry.amount,
        entry.balance,
        previous_status=previous_status,
        previous_error=previous_error,
        newly_charged=entry.created,
    )


def _ticket(
    pose: Pose,
    user: User,
    request_id: uuid.UUID,
    amount: int,
    balance: int,
    *,
    previous_status: str = PoseStatus.READY,
    previous_error: str | None = None,
    newly_charged: bool = False,
) -> ChangeTicket:
    return ChangeTicket(
        pose_id=pose.id,
        generation_id=pose.generation_id,
        user_id=user.id,
        request_id=request_id,
        charge_key=charge_key(request_id),
        credit_charged=-amount,
        credit_balance=balance,
        output_key=output_key(pose),
        previous_status=previous_status,
        previous_error=previous_error,
        newly_charged=newly_charged,
    )


def record_flow_run(session: Session, ticket: ChangeTicket, flow_run_id: uuid.UUID) -> None:
    """Tie the pose and the charge to the run, so the reconciler can ask Prefect how it ended."""
    session.execute(
        update(Pose)
        .where(Pose.id == ticket.pose_id, Pose.change_request_id == ticket.request_id)
        .values(change_flow_run_id=flow_run_id)
    )
    session.execute(
        update(CreditTransaction)
        .where(
            CreditTransaction.idempotency_key == ticket.charge_key,
            CreditTransaction.flow_run_id.is_(None),
        )
        .values(flow_run_id=flow_run_id)
    )
    session.commit()


def complete_change(
    session: Session,
    pose_id: uuid.UUID,
    request_id: uuid.UUID,
    change: BackgroundChange,
    *,
    image_key: str,
    mask_key: str,
    background_key: str,
) -> Pose:
    """Point the pose at its new image; exports made from the old image are now out of date."""
    pose = session.get(Pose, pose_id)
    assert pose is not None
    pose.image_key = image_key
    pose.mask_key = mask_key
    pose.background_key = background_key
    pose.background_changed = True
    pose.background_mode = change.background_mode.value
    pose.background_prompt = change.background_prompt
    pose.background_color = change.background_color
    pose.status = PoseStatus.READY
    pose.error_message = None
    pose.export_formats = {}
    record_outcome(
        session,
        request_id=request_id,
        pose_id=pose_id,
        outcome=Outcome.COMPLETED,
        charge_key=charge_key(request_id),
    )
    session.commit()
    return pose


def fail_change(
    session: Session,
    pose_id: uuid.UUID,
    request_id: uuid.UUID,
    message: str,
    *,
    flow_run_id: uuid.UUID | None = None,
) -> credits.LedgerEntry | None:
    """Refund the request's charge exactly once and record the error on the pose.

    Only the request that holds the claim marks the pose failed, so a late failure of an old
    run cannot overwrite a newer change's state.
    """
    refund = credits.refund_charge(
        session, charge_key(request_id), reason="refund", flow_run_id=flow_run_id
    )
    session.execute(
        update(Pose)
        .where(Pose.id == pose_id, Pose.change_request_id == request_id)
        .values(status=PoseStatus.FAILED, error_message=message[:2000])
    )
    if refund is not None and refund.created:
        _record_failure(session, pose_id, request_id)
    session.commit()
    return refund


def abort_change(session: Session, ticket: ChangeTicket) -> credits.LedgerEntry | None:
    """The run could not even be submitted: refund at once and put the pose back as it was.

    Only the call that made the charge aborts it; a retry of an accepted request leaves the
    first submission's run (which may well be running) alone.
    """
    if not ticket.newly_charged:
        return None
    refund = credits.refund_charge(session, ticket.charge_key, reason="refund")
    if refund is not None and refund.created:
        _record_failure(session, ticket.pose_id, ticket.request_id)
        session.commit()
    _release_claim(
        session, ticket.pose_id, ticket.request_id, ticket.previous_status, ticket.previous_error
    )
    return refund


def _record_failure(session: Session, pose_id: uuid.UUID, request_id: uuid.UUID) -> None:
    """A change counts as failed where its refund is made: that happens exactly once."""
    record_outcome(
        session,
        request_id=request_id,
        pose_id=pose_id,
        outcome=Outcome.FAILED,
        charge_key=charge_key(request_id),
    )


def _release_claim(
    session: Session,
    pose_id: uuid.UUID,
    request_id: uuid.UUID,
    status: str,
    error_message: str | None,
) -> None:
    session.rollback()
    session.execute(
        update(Pose)
        .where(Pose.id == pose_id, Pose.change_request_id == request_id)
        .values(
            status=status,
            error_message=error_message,
            change_request_id=None,
            change_started_at=None,
        )
    )
    session.commit()


@dataclass(frozen=True)
class PoseImages:
    """Where one pose's images live: the original, and what a change writes next to it."""

    pose_id: uuid.UUID
    generation_id: uuid.UUID
    width: int
    height: int
    original_key: str
    mask_key: str
    cutout_key: str
    background_key: str
    output_key: str

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


def pose_images(session: Session, pose_id: uuid.UUID) -> PoseImages:
    pose = session.get(Pose, pose_id)
    if pose is None:
        raise NotFound("Pose not found")
    stem = f"poses/{pose.generation_id}/{pose.id}"
    return PoseImages(
        pose_id=pose.id,
        generation_id=pose.generation_id,
        width=pose.width,
        height=pose.height,
        original_key=pose.original_image_key,
        mask_key=f"{stem}_mask.png",
        cutout_key=f"{stem}_cutout.png",
        background_key=f"{stem}_background.png",
        output_key=f"{stem}_bg.png",
    )
