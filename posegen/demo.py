"""The demo: demo users with sample poses (`seed_demo`, which `posegen up` calls too) and
`make demo` (`python -m posegen.demo`), a background change in each mode on the embedded defaults.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import httpx
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from posegen.auth import create_token
from posegen.config import get_settings
from posegen.db.models import Generation, User
from posegen.db.session import session_scope
from posegen.domain import credits
from posegen.domain.poses import import_generation
from posegen.domain.projects import project_named
from posegen.domain.sign_in import create_login_link
from posegen.domain.users import create_user, find_user_by_email
from posegen.errors import Conflict, PosegenError
from posegen.storage import Storage, get_storage

DEMO_ADMIN_EMAIL = "admin@posegen.local"
DEMO_USER_EMAIL = "demo@posegen.local"
DEMO_CREDITS = 100
# Marks the demo user's sample generation, so a second seed finds it instead of adding another.
DEMO_PROJECT = "Demo poses"
# The first one is "the demo pose": a clear portrait that the small default model cuts out well.
SAMPLE_POSES = ("astronaut.jpg", "astronaut-portrait.jpg", "cameraman.jpg")
BACKDROP = "backdrop.jpg"
DEMO_COLOR = "#1E90FF"
DEMO_PROMPT = "a bright, minimalist photo studio with a soft beige paper backdrop"
# Time for the temporary Prefect server: on a fresh PREFECT_HOME it creates and migrates its
# SQLite database first, which takes longer than Prefect's own 20 s default on a small machine.
_PREFECT_STARTUP_TIMEOUT = 90


@dataclass(frozen=True)
class DemoData:
    """Who and what the demo uses; tokens are fresh JWTs for the demo admin and demo user."""

    admin_id: uuid.UUID
    admin_token: str
    user_id: uuid.UUID
    user_token: str
    generation_id: uuid.UUID
    pose_ids: tuple[uuid.UUID, ...]
    credits: int
    # One-time web app sign-in links (each works once, for POSEGEN_WEB_LOGIN_LINK_MINUTES).
    admin_sign_in: str
    user_sign_in: str

    @property
    def pose_id(self) -> uuid.UUID:
        return self.pose_ids[0]


def sample_path(name: str) -> Path:
    """A committed sample image; package data, so it is there in an installed wheel too."""
    return Path(str(files("posegen") / "samples" / name))


def seed_demo() -> DemoData:
    """Create the demo admin, the demo user and its sample generation, or reuse them.

    Safe to run again and concurrently (`make run` and `make demo` at once): existing users are
    reused, the demo user is topped up to DEMO_CREDITS through the ledger, and a new sample
    generation is imported only when there is none whose images are in the current storage.
    """
    storage = get_storage()
    storage.ensure_bucket()
    with session_scope() as session:
        admin = _demo_user(session, DEMO_ADMIN_EMAIL, admin=True)
        user = _demo_user(session, DEMO_USER_EMAIL, opening_credits=DEMO_CREDITS)
        balance = _top_up(session, user)
        generation = _sample_generation(session, storage, user.id)
        return DemoData(
            admin_id=admin.id,
            admin_token=create_token(admin.id, admin.role),
            user_id=user.id,
            user_token=create_token(user.id, user.role),
            generation_id=generation.id,
            pose_ids=tuple(pose.id for pose in generation.poses),
            credits=balance,
            admin_sign_in=create_login_link(session, admin).url,
            user_sign_in=create_login_link(session, user).url,
        )


def _demo_user(
    session: Session, email: str, *, admin: bool = False, opening_credits: int = 0
) -> User:
    user = find_user_by_email(session, email)
    if user is not None:
        return user
    try:
        return create_user(session, email, opening_credits=opening_credits, admin=admin)
    except Conflict:  # another seed created it meanwhile
        user = find_user_by_email(session, email)
        if user is None:
            raise
        return user


def _top_up(session: Session, user: User) -> int:
    """Bring the demo user back to DEMO_CREDITS with a ledger grant, so every demo session
    starts with the same budget and balance = sum(ledger) still holds."""
    current = credits.balance(session, user.id)
    if current >= DEMO_CREDITS:
        return current
    entry = credits.grant_credits(
        session,
        user.id,
        DEMO_CREDITS - current,
        idempotency_key=f"demo-top-up:{uuid.uuid4()}",
        reason="demo_top_up",
    )
    return entry.balance


def _sample_generation(session: Session, storage: Storage, user_id: uuid.UUID) -> Generation:
    """The oldest demo generation whose originals exist in this storage; else a new import.

    Checking the files (not only the rows) matters when the same database is started with
    another storage URL: poses whose images are elsewhere could not be changed.
    """
    project = project_named(session, user_id, DEMO_PROJECT)
    candidates = session.scalars(
        select(Generation)
        .where(Generation.user_id == user_id, Generation.project_id == project.id)
        .order_by(Generation.created_at)
    )
    for generation in candidates:
        poses = generation.poses
        if len(poses) == len(SAMPLE_POSES) and all(
            storage.exists(pose.original_image_key) for pose in poses
        ):
            return generation
    images = [sample_path(name).read_bytes() for name in SAMPLE_POSES]
    return import_generation(session, storage, user_id, images, project_id=project.id)


@contextmanager
def _prefect_api(console: Console) -> Iterator[str]:
    """The Prefect API the demo's flow runs report to.

    PREFECT_API_URL when set; else the server of a running `posegen up`, so the runs show in
    its UI (and two servers never share one SQLite file); else a temporary local server. Prefect
    would start that one by itself on first use, but with a 20 s timeout that a fresh
    PREFECT_HOME (database creation and migrations) exceeds here, so it is started explicitly.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    local = get_settings().local_prefect_api_url
    if _answers(f"{local}/health"):
        with temporary_settings({PREFECT_API_URL: local}):
            yield local
        return
    console.print("starting a temporary Prefect server (no PREFECT_API_URL, no `make run` up)")
    settings = get_settings()
    if settings.database_url is None:
        # On the embedded default it keeps its state in the embedded PostgreSQL too (the
        # stack's `prefect` database, so these runs show in `make run`'s UI), not in SQLite.
        # Its subprocess reads the environment.
        os.environ.setdefault(
            "PREFECT_SERVER_DATABASE_CONNECTION_URL",
            settings.embedded_database_url("prefect", driver="asyncpg"),
        )
    # Port None is the instance Prefect's own get_client() reuses, so the flows find it running.
    server = SubprocessASGIServer()
    server.start(timeout=_PREFECT_STARTUP_TIMEOUT)
    try:
        yield server.api_url
    finally:
        _drain_prefect_workers()
        server.stop()


def _drain_prefect_workers() -> None:
    """Send buffered flow-run logs and events before the temporary server goes away; otherwise
    Prefect's background workers retry against the stopped server for a minute at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        # Both return awaitables when called inside an event loop, as here.
        with suppress(RuntimeError):  # the log worker never started
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class _DemoChange:
    label: str
    pose_id: uuid.UUID
    color: str | None = None
    prompt: str | None = None
    image: Path | None = None


def _demo_changes(demo: DemoData) -> tuple[list[_DemoChange], str | None]:
    """One change per mode, each on its own pose: a pose has one output key, so changing one
    pose three times would leave only the last result to look at."""
    changes = [
        _DemoChange("solid_color", demo.pose_ids[0], color=DEMO_COLOR),
        _DemoChange("upload", demo.pose_ids[2], image=sample_path(BACKDROP)),
    ]
    key = get_settings().flux_api_key
    if key is None or not key.get_secret_value():
        return changes, "POSEGEN_FLUX_API_KEY is not set (the FLUX API needs a key)"
    changes.append(_DemoChange("ai_generate", demo.pose_ids[1], prompt=DEMO_PROMPT))
    return changes, None


async def _run_changes(console: Console, changes: list[_DemoChange]) -> bool:
    from posegen.localrun import run_background_change

    storage = get_storage()
    ok = True
    for change in changes:
        started = time.perf_counter()
        try:
            result = await run_background_change(
                change.pose_id, color=change.color, prompt=change.prompt, image=change.image
            )
        except PosegenError as error:
            console.print(f"[red]{change.label} failed:[/red] {error.message}")
            ok = False
            continue
        seconds = time.perf_counter() - started
        path = storage.local_path(result.output_key)  # None on S3
        where = str(path) if path else f"{storage.url.rstrip('/')}/{result.output_key}"
        console.print(
            f"[green]{change.label}[/green] in {seconds:.1f} s → {where}\n"
            f"  credit balance: {result.balance}",
        )
    return ok


def _run_export(console: Console, demo: DemoData) -> bool:
    """Every catalog format of the demo generation through the `multi-format-export` flow."""
    from flows.export import multi_format_export
    from posegen.domain.export_requests import ExportRequest
    from posegen.domain.exports import FORMATS

    console.print(f"[bold]multi-format export[/bold] of generation {demo.generation_id}")
    started = time.perf_counter()
    state = multi_format_export(
        demo.generation_id, ExportRequest(formats=list(FORMATS)), return_state=True
    )
    if not state.is_completed():
        console.print(f"[red]export failed:[/red] {state.message}")
        return False
    result = state.result()
    storage = get_storage()
    console.print(
        f"  {result['files']} files in {time.perf_counter() - started:.1f} s; ZIP: "
        f"{storage.local_path(result['zipKey']) or result['zipKey']}"
    )
    for key in storage.list(f"exports/{demo.generation_id}/{demo.pose_id}/"):
        console.print(f"  {storage.local_path(key) or key}")
    return True


def main() -> int:
    """Migrate, seed, change backgrounds in every available mode; print outputs and balances,
    on the embedded PostgreSQL (the running stack's, or one started for the demo)."""
    from posegen.runtime.postgres import embedded_database

    with embedded_database():
        return _demo()


def _demo() -> int:
    from posegen.db.migrate import upgrade

    console = Console(soft_wrap=True)  # output paths stay whole, in a terminal or a pipe
    started = time.perf_counter()
    settings = get_settings()
    upgrade()
    demo = seed_demo()
    console.print(
        f"database {settings.database}\nstorage {get_storage().url}\n"
        f"demo user {DEMO_USER_EMAIL}: {demo.credits} credits, "
        f"generation {demo.generation_id}",
    )
    changes, skipped = _demo_changes(demo)
    with _prefect_api(console) as api_url:
        console.print(f"Prefect API {api_url}")
        ok = asyncio.run(_run_changes(console, changes))
        ok = _run_export(console, demo) and ok
    if skipped:
        console.print(f"[yellow]ai_generate skipped:[/yellow] {skipped}")
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
