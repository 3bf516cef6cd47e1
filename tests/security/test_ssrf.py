"""SSRF through the API: an upload-mode background URL that points inside is refused with 400
before anything is charged or submitted.

The guard itself (posegen/remote.py) is tested in tests/test_remote.py, including host names
that resolve to private addresses, DNS rebinding and redirects to internal hosts; those need a
resolver and a server under the test's control, so they are not repeated here. This file shows
that the API route runs the guard before charging, for every spelling of an internal address
an attacker would try.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import (
    BASE,
    Account,
    Generated,
    assert_pose_untouched,
    balance,
    ledger,
)

pytestmark = pytest.mark.usefixtures("no_rate_limits")

INTERNAL_URLS = [
    # loopback, in every spelling a resolver accepts
    "https://127.0.0.1/bg.png",
    "https://127.1/bg.png",
    "https://127.000.000.001/bg.png",
    "https://2130706433/bg.png",  # decimal
    "https://0x7f000001/bg.png",  # hex
    "https://0x7f.0.0.1/bg.png",
    "https://0177.0.0.1/bg.png",  # octal
    "https://017700000001/bg.png",
    "https://localhost/bg.png",
    "https://LOCALHOST./bg.png",
    "https://foo.localhost/bg.png",
    "https://0.0.0.0/bg.png",
    "https://0/bg.png",
    # private ranges
    "https://10.0.0.7/bg.png",
    "https://172.16.5.4/bg.png",
    "https://172.31.255.255/bg.png",
    "https://192.168.1.1/bg.png",
    "https://100.64.0.1/bg.png",  # carrier-grade NAT
    "https://0xa.0.0.1/bg.png",
    "https://3232235777/bg.png",  # 192.168.1.1
    # link-local and cloud metadata
    "https://169.254.169.254/latest/meta-data/",
    "https://169.254.0.1/bg.png",
    "https://2852039166/latest/meta-data/",  # 169.254.169.254 as one number
    "https://0xa9fea9fe/latest/meta-data/",
    "https://100.100.100.200/latest/meta-data/",  # Alibaba Cloud
    "https://metadata.google.internal/computeMetadata/v1/",
    # IPv6
    "https://[::1]/bg.png",
    "https://[0:0:0:0:0:0:0:1]/bg.png",
    "https://[::]/bg.png",
    "https://[::ffff:127.0.0.1]/bg.png",
    "https://[::ffff:7f00:1]/bg.png",
    "https://[::ffff:169.254.169.254]/bg.png",
    "https://[fd00:ec2::254]/latest/meta-data/",  # AWS metadata over IPv6
    "https://[fe80::1]/bg.png",
    "https://[fe80::1%25eth0]/bg.png",
    "https://[fc00::1]/bg.png",
    "https://[64:ff9b::a9fe:a9fe]/bg.png",  # NAT64 of 169.254.169.254
    "https://[2002:7f00:1::]/bg.png",  # 6to4 of 127.0.0.1
    # other tricks
    "https://user:pass@example.com/bg.png",
    "https://example.com@127.0.0.1/bg.png",
    "https://224.0.0.1/bg.png",  # multicast
    "https://255.255.255.255/bg.png",
]

NOT_HTTPS = [
    "http://example.com/bg.png",
    "HTTP://127.0.0.1/bg.png",
    "ftp://example.com/bg.png",
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "dict://127.0.0.1:11211/stat",
    "ldap://127.0.0.1/",
    "data:image/png;base64,iVBORw0KGgo=",
    "javascript:alert(1)",
    "//127.0.0.1/bg.png",
    "https:/127.0.0.1/bg.png",
]


@pytest.mark.parametrize(
    ("urls", "error"),
    [(INTERNAL_URLS, "RemoteImageRefused"), (NOT_HTTPS, "ValidationError")],
    ids=["internal-addresses", "not-https"],
)
def test_refused_image_urls_are_400_and_charge_nothing(
    client: TestClient,
    db_url: str,
    account: Account,
    generated: Generated,
    urls: list[str],
    error: str,
) -> None:
    """One test per group, not per URL: each answer is checked, the setup is paid once."""
    answers = {}
    for url in urls:
        body = {"backgroundMode": "upload", "backgroundImageUrl": url}
        response = client.post(
            f"{BASE}/poses/{generated.pose_id}/background", json=body, headers=account.headers
        )
        answers[url] = (response.status_code, response.json()["error"])

    assert {url: answer for url, answer in answers.items() if answer != (400, error)} == {}
    assert balance(db_url, account.id) == 100
    assert ledger(db_url, account.id) == []
    assert_pose_untouched(db_url, generated.pose_id)
