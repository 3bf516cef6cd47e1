"""Projects (the seed's Phase 2): create, list (paginated, own), read with generations, edit,
delete (409 while it has generations); `projectId` on generations from the API and the CLI."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from posegen.cli import app as cli
from posegen.db.models import Generation, Project, User
from posegen.db.session import session_scope
from tests.api.conftest import BASE, Account, png_bytes

PROJECTS = f"{BASE}/projects"


def _create(client: TestClient, owner: Account, name: str, **fields: object) -> dict:
    response = client.post(PROJECTS, json={"name": name, **fields}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_list_read_edit_and_delete_a_project(
    client: TestClient, account: Account, new_account: Callable[..., Account]
) -> None:
    created = _create(client, account, "  Summer   catalog ", description="Beachwear")
    assert (created["name"], created["description"], created["generationCount"]) == (
        "Summer catalog",
        "Beachwear",
        0,
    )
    _create(client, account, "Winter")
    _create(client, new_account(), "Someone else's")

    listed = client.get(PROJECTS, params={"limit": 1}, headers=account.headers).json()
    assert [p["name"] for p in listed["items"]] == ["Winter"]
    assert listed["pagination"] == {"page": 1, "limit": 1, "total": 2, "totalPages": 2}

    url = f"{PROJECTS}/{created['id']}"
    edited = client.patch(url, json={"description": None}, headers=account.headers)
    assert (edited.status_code, edited.json()["description"]) == (200, None)
    assert edited.json()["name"] == "Summer catalog"
    renamed = client.patch(url, json={"name": "Summer 2027"}, headers=account.headers).json()
    assert renamed["name"] == "Summer 2027" and renamed["generations"] == []

    assert client.delete(url, headers=account.headers).status_code == 204
    assert client.get(url, headers=account.headers).status_code == 404


def test_a_generation_joins_a_project_and_blocks_its_deletion(
    client: TestClient, account: Account, new_account: Callable[..., Account]
) -> None:
    project = _create(client, account, "Catalog")
    made = client.post(
        f"{BASE}/generations", json={"projectId": project["id"]}, headers=account.headers
    )
    assert made.status_code == 201, made.text
    generation = made.json()
    assert generation["projectId"] == project["id"]
    added = client.post(
        f"{BASE}/generations/{generation['id']}/poses",
        files={"file": ("a.png", png_bytes(), "image/png")},
        headers=account.headers,
    )
    assert added.status_code == 201
    # Without a body the generation belongs to no project, as before.
    loose = client.post(f"{BASE}/generations", headers=account.headers).json()
    assert loose["projectId"] is None

    url = f"{PROJECTS}/{project['id']}"
    detail = client.get(url, headers=account.headers).json()
    assert [g["id"] for g in detail["generations"]] == [generation["id"]]
    assert detail["generationCount"] == 1 and detail["generations"][0]["poseCount"] == 1
    refused = client.delete(url, headers=account.headers)
    assert refused.status_code == 409
    assert refused.json()["error"] == "Conflict" and refused.json()["generationCount"] == 1


def test_someone_elses_project_is_a_404_everywhere(
    client: TestClient, account: Account, new_account: Callable[..., Account]
) -> None:
    theirs = _create(client, new_account(), "Theirs")["id"]
    missing = str(uuid.uuid4())
    for project_id in (theirs, missing, "not-a-uuid"):
        url = f"{PROJECTS}/{project_id}"
        for response in (
            client.get(url, headers=account.headers),
            client.patch(url, json={"name": "x"}, headers=account.headers),
            client.delete(url, headers=account.headers),
        ):
            assert response.status_code == 404
            assert response.json() == {"error": "NotFound", "message": "Project not found"}
    placed = client.post(f"{BASE}/generations", json={"projectId": theirs}, headers=account.headers)
    assert placed.status_code == 404


def test_invalid_project_bodies_are_400_naming_the_field(
    client: TestClient, account: Account
) -> None:
    for body, field in (
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "description": "d" * 501}, "description"),
        ({"name": "ok", "userId": str(uuid.uuid4())}, "userId"),
    ):
        response = client.post(PROJECTS, json=body, headers=account.headers)
        assert response.status_code == 400, body
        assert response.json()["details"][0]["field"] == field
    bad = client.post(f"{BASE}/generations", json={"projectId": "nope"}, headers=account.headers)
    assert bad.status_code == 400


def test_cli_import_puts_the_generation_in_a_project(
    db_url: str, account: Account, tmp_path: Path
) -> None:
    (tmp_path / "one.png").write_bytes(png_bytes())
    with session_scope(db_url) as session:
        user = session.get(User, account.id)
        assert user is not None
        email = user.email

    runner = CliRunner()
    by_name = runner.invoke(cli, ["import", str(tmp_path), "--user", email, "--project", "Shoot"])
    assert by_name.exit_code == 0, by_name.output
    again = runner.invoke(cli, ["import", str(tmp_path), "--user", email, "--project", "Shoot"])
    with session_scope(db_url) as session:
        project = session.scalar(select(Project).where(Project.user_id == account.id))
        assert project is not None and project.name == "Shoot"
        project_id = project.id
    by_id = runner.invoke(
        cli, ["import", str(tmp_path), "--user", email, "--project", str(project_id)]
    )
    assert again.exit_code == by_id.exit_code == 0
    ids = [uuid.UUID(result.output.strip().splitlines()[-1]) for result in (by_name, again, by_id)]
    with session_scope(db_url) as session:
        placed = {session.get(Generation, i).project_id for i in ids}  # type: ignore[union-attr]
        assert placed == {project_id}
    stranger = runner.invoke(
        cli, ["import", str(tmp_path), "--user", email, "--project", str(uuid.uuid4())]
    )
    assert stranger.exit_code != 0 and "Project not found" in stranger.output
