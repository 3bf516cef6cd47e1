"""The lock and the project agree: what pyproject.toml asks for is what uv.lock was made from,
every locked package satisfies its range, and every locked file carries a hash.

Read offline from the two files, so a stale lock fails here (and `make install`'s
`uv sync --locked` refuses it too) instead of installing something nobody chose.
"""

from __future__ import annotations

import tomllib
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())


def _project_entry() -> dict[str, Any]:
    [entry] = [p for p in LOCK["package"] if p.get("source") == {"editable": "."}]
    return entry


def _asked() -> set[tuple[str, str, str | None]]:
    """(name, specifier, extra) for every requirement in pyproject.toml."""
    project = PYPROJECT["project"]
    wanted = {(r, None) for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        wanted |= {(r, extra) for r in requirements}
    out = set()
    for text, extra in wanted:
        requirement = Requirement(text)
        out.add((canonicalize_name(requirement.name), str(requirement.specifier), extra))
    return out


def _locked_from() -> set[tuple[str, str, str | None]]:
    """The same, as uv recorded them when it made the lock."""
    out = set()
    for item in _project_entry()["metadata"]["requires-dist"]:
        marker = item.get("marker", "")
        extra = marker.split("'")[1] if marker.startswith("extra == ") else None
        specifier = str(SpecifierSet(item.get("specifier", "")))
        out.add((canonicalize_name(item["name"]), specifier, extra))
    return out


def _normalized(requirements: set[tuple[str, str, str | None]]) -> set[tuple[str, str, str | None]]:
    return {(name, str(SpecifierSet(spec)), extra) for name, spec, extra in requirements}


def test_the_lock_was_made_from_exactly_what_pyproject_asks_for() -> None:
    assert _normalized(_locked_from()) == _normalized(_asked())
    assert _project_entry()["version"] == PYPROJECT["project"]["version"]


def test_every_locked_package_satisfies_its_range_and_every_file_has_a_hash() -> None:
    versions = {canonicalize_name(p["name"]): p["version"] for p in LOCK["package"]}
    for name, specifier, _extra in _asked():
        assert name in versions, f"{name} is asked for but not locked"
        assert SpecifierSet(specifier).contains(versions[name], prereleases=True), name
    unhashed = [
        package["name"]
        for package in LOCK["package"]
        if package.get("source") != {"editable": "."}
        for dist in [package.get("sdist"), *package.get("wheels", [])]
        if dist is not None and not str(dist.get("hash", "")).startswith("sha256:")
    ]
    assert unhashed == []
