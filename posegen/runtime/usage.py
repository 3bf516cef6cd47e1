"""What `posegen up` prints once the stack is ready: URLs, demo tokens, copy-paste commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from posegen.api.paths import BASE_PATH
from posegen.config import Settings
from posegen.runtime.console import console

if TYPE_CHECKING:
    from posegen.demo import DemoData


def print_usage(settings: Settings, demo: DemoData, *, prefect_api_url: str | None = None) -> None:
    """URLs, demo tokens and copy-paste curl commands; one line per value (soft wrap), so a
    token is never broken across lines, on a terminal or in a pipe."""
    from posegen.demo import DEMO_ADMIN_EMAIL, DEMO_COLOR, DEMO_USER_EMAIL

    api = settings.public_url
    pose_url = f"{api}{BASE_PATH}/poses/{demo.pose_id}"
    auth = f'-H "Authorization: Bearer {demo.user_token}"'
    body = f'{{"backgroundMode":"solid_color","backgroundColor":"{DEMO_COLOR}"}}'
    rows = [
        ("web app", f"{api}/app"),
        ("user sign-in", demo.user_sign_in),
        ("admin sign-in", demo.admin_sign_in),
        ("API docs", f"{api}/docs"),
        ("Prefect UI", (prefect_api_url or settings.local_prefect_api_url).removesuffix("/api")),
        ("database", settings.database),
        ("logs", str(settings.home_dir / "logs")),
        ("demo admin", DEMO_ADMIN_EMAIL),
        ("admin token", demo.admin_token),
        ("demo user", f"{DEMO_USER_EMAIL} ({demo.credits} credits)"),
        ("user token", demo.user_token),
        ("demo pose", str(demo.pose_id)),
    ]
    lines = [f"  {label:<13} {value}" for label, value in rows]
    lines += [
        "",
        "Open a sign-in link in your browser: each works once, for "
        f"{settings.web_login_link_minutes} minutes (new ones: posegen login-link EMAIL).",
        "",
        f"Change the demo pose's background to a solid colour ({DEMO_COLOR}):",
        f"curl -sS -X POST {pose_url}/background \\",
        f"  {auth} \\",
        '  -H "Content-Type: application/json" \\',
        f"  -d '{body}'",
        "Then read the pose (status ready and backgroundChanged true when done; imageUrl is the",
        "new image, fetched with the same token):",
        f"curl -sS {pose_url} \\",
        f"  {auth}",
        "",
        "Export the demo generation to Instagram story and Shopee sizes (a ZIP when done):",
        f"curl -sS -X POST {api}{BASE_PATH}/generations/{demo.generation_id}/exports \\",
        f"  {auth} \\",
        '  -H "Content-Type: application/json" \\',
        """  -d '{"formats":["instagram_story","shopee_product"]}'""",
        f"curl -sS {api}{BASE_PATH}/generations/{demo.generation_id}/results \\",
        f"  {auth}",
        "",
        "Ask the community for a new pose (admins approve it at /admin/pose-requests):",
        f"curl -sS -X POST {api}{BASE_PATH}/requests \\",
        f"  {auth} \\",
        '  -H "Content-Type: application/json" \\',
        """  -d '{"poseName":"Hands on hips, looking left","description":"For outfit shots"}'""",
        "",
        "Ctrl-C stops everything.",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False)
