"""Users: creation with an opening credit grant recorded in the ledger."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from posegen.db.models import Role, User
from posegen.domain import credits
from posegen.errors import Conflict, ValidationFailed


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email:
        raise ValidationFailed(f"Not an email address: {email!r}")
    return email


def create_user(
    session: Session,
    email: str,
    *,
    opening_credits: int = 0,
    unlimited: bool = False,
    admin: bool = False,
) -> User:
    """A new user; the opening credits are a ledger grant, so balance = sum(ledger) from day one."""
    if opening_credits < 0:
        raise ValidationFailed("credits must be zero or more")
    user = User(
        id=uuid.uuid4(),
        email=normalize_email(email),
        role=Role.ADMIN if admin else Role.USER,
        credits=0,
        enterprise_unlimited=unlimited,
    )
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"A user with email {user.email} already exists") from None
    if opening_credits:
        credits.grant_credits(
            session,
            user.id,
            opening_credits,
            idempotency_key=f"opening:{user.id}",
            reason="opening",
        )
        session.refresh(user)
    return user


def get_user(session: Session, user_id: uuid.UUID) -> User | None:
    return session.get(User, user_id)


def find_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))
