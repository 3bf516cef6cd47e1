"""Prompts an attacker shapes to get past the length and keyword rules: 400, nothing charged.

tests/api/test_poses.py shows the plain cases (a long prompt, "gun"); these are the spellings
meant to slip through, sent to a server where AI generation is configured, so the only thing
between them and FLUX is validation.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from posegen.config import reset_settings
from tests.api.conftest import (
    BASE,
    Account,
    Generated,
    assert_pose_untouched,
    balance,
    ledger,
)

pytestmark = pytest.mark.usefixtures("no_rate_limits")

TOO_LONG = [
    "x" * 301,
    "a beach " * 37 + "at noon",  # 303 characters once spaces are normalised
    "\u00e9" * 301,  # 301 characters, 602 bytes: characters are what counts
]
FORBIDDEN = [
    "A NUDE model on a beach",
    "a beach, with a gun!",
    "nsfw-style neon city",
    "Blood-red sunset, violence in the streets",
    "\uff4e\uff55\uff44\uff45 figure in a studio",  # fullwidth letters
    "nu\u200bde figure in a studio",  # zero-width space inside the word
    "g\u200du\u200dn on a table",  # zero-width joiners
    "\u00adporn\u00ad backdrop",  # soft hyphens
    "studio\nbackdrop\twith\u00a0a weapon",  # other whitespace between words
]
EMPTY = ["", "   ", "\n\t"]


@pytest.mark.parametrize(
    ("prompts", "message_part"),
    [
        (TOO_LONG, "at most 300 characters"),
        (FORBIDDEN, "forbidden keywords"),
        (EMPTY, "must not be empty"),
    ],
    ids=["too-long", "forbidden-keywords", "empty"],
)
def test_refused_prompt_is_400_and_charges_nothing(
    client: TestClient,
    db_url: str,
    account: Account,
    generated: Generated,
    monkeypatch: pytest.MonkeyPatch,
    prompts: list[str],
    message_part: str,
) -> None:
    monkeypatch.setenv("POSEGEN_FLUX_API_KEY", "configured-flux-key")
    reset_settings()
    answers = {}
    for prompt in prompts:
        for mode in ("ai_generate", "solid_color"):  # a prompt is checked in every mode
            body = {
                "backgroundMode": mode,
                "backgroundPrompt": prompt,
                "backgroundColor": "#112233",
            }
            response = client.post(
                f"{BASE}/poses/{generated.pose_id}/background", json=body, headers=account.headers
            )
            answers[(prompt, mode)] = (response.status_code, response.json()["message"])

    wrong = {
        key: answer
        for key, answer in answers.items()
        if answer[0] != 400 or message_part not in answer[1]
    }
    assert wrong == {}
    assert balance(db_url, account.id) == 100
    assert ledger(db_url, account.id) == []
    assert_pose_untouched(db_url, generated.pose_id)
