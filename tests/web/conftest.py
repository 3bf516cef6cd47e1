"""Web app fixtures: the live stack a browser talks to, and Debian's Chromium driving it.

`web_stack` (one per session) starts what `make run` starts, on the session's real services: the
API (uvicorn, own process) and the runner serving the deployments with its warm pool, both on a
fresh PostgreSQL database, a local storage folder, the session's Prefect server and the fake
BFL server. Deployment names are the session's own, so runs submitted by other tests are never
picked up here. Tests read the database and storage directly to check what a page did.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from posegen.pins import AXE_CORE
from posegen.storage import Storage
from posegen.web.vendor import fetch, vendored_path
from tests.api.conftest import (
    account,
    client,
    db_url,
    generated,
    new_account,
    new_generation,
)
from tests.conftest import ROOT, make_user
from tests.fake_bfl import FakeBFLServer

__all__ = [
    "account",
    "client",
    "db_url",
    "generated",
    "new_account",
    "new_generation",
]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
_STARTUP_SECONDS = 120
# The pages answer in milliseconds, but late in a full run on two busy cores a request that
# submits a Prefect run can take seconds. An assertion returns as soon as it holds, so a longer
# ceiling than Playwright's 5 s slows no passing test; it only stops load from failing one.
expect.set_options(timeout=15_000)


@dataclass(frozen=True)
class WebStack:
    base_url: str
    db_url: str
    storage_dir: Path
    fake_bfl: FakeBFLServer
    logs: Path

    @property
    def storage(self) -> Storage:
        return Storage(str(self.storage_dir))

    def sign_in_path(self, user_id: uuid.UUID, minutes: int | None = None) -> str:
        from posegen.db.models import User
        from posegen.db.session import session_scope
        from posegen.domain.sign_in import create_login_link

        with session_scope(self.db_url) as session:
            user = session.get(User, user_id)
            assert user is not None
            return create_login_link(session, user, minutes=minutes).path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-4000:]
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"did not start in {_STARTUP_SECONDS} s: {log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="session")
def web_stack(
    rembg_warm: None,
    prefect_api: str,
    pg_url: str,
    fake_bfl_server: FakeBFLServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebStack]:
    root = tmp_path_factory.mktemp("web-stack")
    storage_dir, logs = root / "storage", root / "logs"
    storage_dir.mkdir()
    logs.mkdir()
    port = _free_port()
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "POSEGEN_DATABASE_URL": pg_url,
        "POSEGEN_STORAGE_URL": str(storage_dir),
        "POSEGEN_FLUX_API_URL": fake_bfl_server.url,
        "POSEGEN_FLUX_API_KEY": fake_bfl_server.api_key,
        "POSEGEN_API_PORT": str(port),
        "POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE": f"background-change/web-{suffix}",
        "POSEGEN_DEPLOYMENT_MULTI_FORMAT_EXPORT": f"multi-format-export/web-{suffix}",
        "POSEGEN_DEPLOYMENT_NIGHTLY_EXPORTS": f"nightly-exports/web-{suffix}",
        "POSEGEN_WARM_WORKERS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "POSEGEN_RATE_LIMIT_ENABLED": "false",
    }
    runner = _start("runner", ["-m", "deployments.serve"], env, logs)
    api = _start(
        "api",
        ["-m", "uvicorn", "posegen.api.app:app", "--host", "127.0.0.1", "--port", str(port)],
        env,
        logs,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        for name in (
            env["POSEGEN_DEPLOYMENT_BACKGROUND_CHANGE"],
            env["POSEGEN_DEPLOYMENT_MULTI_FORMAT_EXPORT"],
        ):
            _wait(
                lambda n=name: httpx.get(f"{prefect_api}/deployments/name/{n}").status_code == 200,
                runner,
                logs / "runner.log",
            )
        _wait(
            lambda: httpx.get(f"{base_url}/app/sign-in").status_code == 200,
            api,
            logs / "api.log",
        )
        yield WebStack(base_url, pg_url, storage_dir, fake_bfl_server, logs)
    finally:
        _stop(api)
        _stop(runner)


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core as `make test` provisions it (fetched here if a bare pytest run lacks it)."""
    directory = ROOT / ".posegen" / "vendor"
    path = vendored_path(AXE_CORE, directory)
    return path if path.exists() else fetch(AXE_CORE, directory)


# Package scope: Playwright's sync API keeps an event loop running in this thread while it is
# open, and Prefect's sync calls in later tests would then hand back coroutines.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's Chromium is missing: `make browser` installs it")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@dataclass
class Seller:
    """A signed-in browser: its page, the user behind it, and the page's uncaught errors."""

    id: uuid.UUID
    page: Page
    context: BrowserContext
    errors: list[str]


@pytest.fixture
def new_seller(web_stack: WebStack, browser: Browser) -> Iterator[Callable[..., Seller]]:
    contexts: list[BrowserContext] = []

    def make(
        *, credits: int = 100, unlimited: bool = False, phone: bool = False, admin: bool = False
    ) -> Seller:
        user_id = make_user(web_stack.db_url, credits=credits, unlimited=unlimited, admin=admin)
        context = browser.new_context(
            base_url=web_stack.base_url,
            viewport=PHONE if phone else DESKTOP,
            accept_downloads=True,
        )
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        # Uncaught script errors; a refused request the page handles is not one.
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(web_stack.sign_in_path(user_id))
        page.wait_for_url("**/app")
        return Seller(user_id, page, context, errors)

    yield make
    for context in contexts:
        context.close()


def check_accessibility(page: Page, axe: Path) -> None:
    """axe-core on the page as it is: no critical or serious violation.

    Evaluated through the DevTools protocol rather than added as a <script>: the pages' CSP
    (scripts from 'self' only) refuses injected scripts, as it should.
    """
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(f"() => {{ {axe.read_text()}\n; window.axe = axe; }}")
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"
    )
    serious = [v for v in result if v["impact"] in ("critical", "serious")]
    assert serious == []


def screenshot(page: Page, name: str) -> None:
    """The page at desktop and phone size, full length, into docs/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky header where a visitor sees it
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.wait_for_timeout(150)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(size)


def sample_photo(name: str) -> Path:
    return ROOT / "posegen" / "samples" / name


def png_file(tmp: Path, name: str, colour: str, size: tuple[int, int] = (640, 480)) -> Path:
    path = tmp / name
    Image.new("RGB", size, colour).save(path)
    return path


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return sorted(archive.namelist())
