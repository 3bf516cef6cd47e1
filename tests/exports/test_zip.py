"""ZIP downloads: streamed from a temp file in chunks, never held whole in memory."""

from __future__ import annotations

import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn

from posegen.db.session import session_scope
from posegen.domain.export_records import record_exports
from posegen.storage import get_storage
from tests.api.conftest import BASE, Account
from tests.exports.conftest import ExportFixture, small_subject_png

FILES, FILE_BYTES = 20, 2_000_000


@pytest.fixture
def live_api(app_env: dict[str, str]) -> Iterator[str]:
    """The API on a real socket (uvicorn in a thread): TestClient would buffer the body."""
    from posegen.api.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_big_zip_streams_in_chunks_without_holding_it_in_memory(
    live_api: str, account: Account, generation_of: Callable[..., ExportFixture]
) -> None:
    """40 MB of (incompressible) export files: the server's and client's Python allocations
    stay far below the ZIP's size while it streams."""
    fixture = generation_of([small_subject_png()], user_id=account.id)
    (pose_id,) = fixture.pose_ids
    storage = get_storage()
    keys = {}
    for index in range(FILES):
        key = f"exports/{fixture.generation_id}/{pose_id}/custom-{100 + index}x100.jpg"
        storage.write_bytes(key, os.urandom(FILE_BYTES))
        keys[f"custom:{100 + index}x100"] = key
    with session_scope() as session:
        record_exports(session, pose_id, keys)

    url = f"{live_api}{BASE}/generations/{fixture.generation_id}/export-zip"
    tracemalloc.start()
    received = chunks = 0
    try:
        with httpx.stream("GET", url, headers=account.headers, timeout=60) as response:
            assert response.status_code == 200
            assert int(response.headers["content-length"]) > FILES * FILE_BYTES
            for chunk in response.iter_raw():
                received += len(chunk)
                chunks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received > FILES * FILE_BYTES
    assert chunks > 10
    print(f"streamed {received} bytes in {chunks} chunks; Python peak {peak} bytes")
    assert peak < received / 4, (peak, received)
