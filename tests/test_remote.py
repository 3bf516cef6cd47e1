"""The SSRF guard and remote image fetch: every refused URL form, redirects, caps, pinned TLS.

A real public https server cannot exist in the test sandbox, and any local one sits on 127.0.0.1,
which the guard (correctly) refuses. So the redirect / size / status logic runs through
`fetch_remote_image` with an injected resolver and `httpx.MockTransport` (the handler sees exactly
the pinned requests), and the pinning itself (connect to the checked IP, verify TLS against the
original host name) is proven once over real TLS by calling the one-hop fetch directly.
"""

from __future__ import annotations

import datetime as dt
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from posegen.errors import TransientError, ValidationFailed
from posegen.remote import _CheckedURL, _fetch_once, check_url, fetch_remote_image

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


def _png(width: int = 4, height: int = 3) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"IP literal or refused name must not be resolved, got {host!r}")


PUBLIC_DNS = _resolver(
    {
        "images.example.com": [PUBLIC_V4],
        "cdn.example.com": [PUBLIC_V4, PUBLIC_V6],
        "v6.example.com": [PUBLIC_V6],
        "internal.example.com": ["10.1.2.3"],
        "rebind.example.com": [PUBLIC_V4, "127.0.0.1"],
        "loop6.example.com": ["::1"],
        "metadata.example.com": ["169.254.169.254"],
        "metadata6.example.com": ["fd00:ec2::254"],
        "mapped.example.com": ["::ffff:169.254.169.254"],
        "cgnat.example.com": ["100.64.1.1"],
        "zero.example.com": ["0.0.0.0"],
        "evil.example.com": ["192.168.1.10"],
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "http://images.example.com/a.png",
        "file:///etc/passwd",
        "gopher://images.example.com:70/_GET",
        "ftp://images.example.com/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "//images.example.com/a.png",
        "images.example.com/a.png",
        "https://user:pass@images.example.com/a.png",
        "https://user@images.example.com/a.png",
        "https:///a.png",
        "https://exa mple.com/a.png",
        "https://[::1/a.png",
        "https://images.example.com:99999/a.png",
        "https://bad_host-.example..com/a.png",
        "https://images.example.com/" + "a" * 2100,
    ],
)
def test_check_url_refuses_non_https_and_malformed_urls(url: str) -> None:
    with pytest.raises(ValidationFailed):
        check_url(url, resolve=PUBLIC_DNS)


@pytest.mark.parametrize(
    "host",
    [
        # loopback, private, link-local, CGNAT, multicast, reserved, unspecified
        "127.0.0.1",
        "127.255.255.254",
        "[::1]",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "[fd12:3456::1]",
        "169.254.1.1",
        "[fe80::1]",
        "[fe80::1%25eth0]",
        "100.64.0.1",
        "100.127.255.254",
        "224.0.0.1",
        "239.255.255.250",
        "[ff02::1]",
        "240.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "[::]",
        "198.18.0.1",
        # cloud metadata
        "169.254.169.254",
        "[fd00:ec2::254]",
        "100.100.100.200",
        # IPv4 embedded in IPv6
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:10.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "[2002:a9fe:a9fe::]",
        "[::127.0.0.1]",
        "[::ffff:0:7f00:1]",
        "[100::1]",
        "[2001:db8::1]",
        # odd spellings a resolver would turn into a private address
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "0x7f.0.0.1",
        "0x7f000001",
        "017700000001",
        "127.1",
        "127.0.0.1.",
        "0",
        "10.1",
        "3232235777",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        # names that are local by definition
        "localhost",
        "LOCALHOST.",
        "anything.localhost",
        "printer.local",
        "metadata.google.internal",
    ],
)
def test_check_url_refuses_internal_addresses_in_every_spelling(host: str) -> None:
    with pytest.raises(ValidationFailed, match="private or internal"):
        check_url(f"https://{host}/a.png", resolve=_no_dns)


@pytest.mark.parametrize(
    "host",
    [
        "internal.example.com",
        "rebind.example.com",  # one bad address is enough: a resolver may rotate to it
        "loop6.example.com",
        "metadata.example.com",
        "metadata6.example.com",
        "mapped.example.com",
        "cgnat.example.com",
        "zero.example.com",
    ],
)
def test_check_url_refuses_names_resolving_to_internal_addresses(host: str) -> None:
    with pytest.raises(ValidationFailed, match="private or internal"):
        check_url(f"https://{host}/a.png", resolve=PUBLIC_DNS)


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com/a.png",
        "https://IMAGES.example.com./a.png?size=large#frag",
        "https://cdn.example.com:8443/a.png",
        "https://v6.example.com/a.png",
        f"https://{PUBLIC_V4}/a.png",
        f"https://[{PUBLIC_V6}]/a.png",
        "https://[::ffff:93.184.215.14]/a.png",
    ],
)
def test_check_url_accepts_public_https_urls(url: str) -> None:
    check_url(url, resolve=PUBLIC_DNS)


def test_check_url_passes_host_and_port_to_the_resolver() -> None:
    seen: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        seen.append((host, port))
        return [PUBLIC_V4]

    check_url("https://Images.Example.com:8443/a.png", resolve=resolve)
    check_url("https://images.example.com./a.png", resolve=resolve)

    assert seen == [("images.example.com", 8443), ("images.example.com", 443)]


def test_unknown_host_is_refused_and_dns_trouble_is_transient() -> None:
    with pytest.raises(ValidationFailed, match="does not exist"):
        check_url("https://nope.example.com/a.png", resolve=PUBLIC_DNS)

    def flaky(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(TransientError):
        check_url("https://images.example.com/a.png", resolve=flaky)


# -- fetch_remote_image through an injected transport -----------------------------------------


@dataclass
class FakeWeb:
    """Answers pinned requests by (Host header, path); records what it was asked."""

    routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = field(
        default_factory=dict
    )
    seen: list[httpx.Request] = field(default_factory=list)

    def route(self, host: str, path: str, response: httpx.Response | Exception) -> None:
        def answer(request: httpx.Request) -> httpx.Response:
            if isinstance(response, Exception):
                raise response
            return response

        self.routes[(host, path)] = answer

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        key = (request.headers["host"], request.url.path)
        if key not in self.routes:
            return httpx.Response(404)
        return self.routes[key](request)

    def fetch(self, url: str, **kwargs: Any) -> bytes:
        transport = httpx.MockTransport(self.handler)
        return fetch_remote_image(
            url, resolve=PUBLIC_DNS, transport=transport, **{"timeout": 5, **kwargs}
        )


@pytest.fixture
def web() -> FakeWeb:
    return FakeWeb()


def test_fetch_pins_the_checked_address_and_keeps_host_and_sni(web: FakeWeb) -> None:
    web.route("images.example.com", "/a.png", httpx.Response(200, content=_png()))

    assert web.fetch("https://images.example.com/a.png?v=1") == _png()

    (request,) = web.seen
    assert request.url.host == PUBLIC_V4  # connected to the address that was checked
    assert request.url.query == b"v=1"
    assert request.headers["host"] == "images.example.com"
    assert request.extensions["sni_hostname"] == "images.example.com"


def test_fetch_follows_up_to_three_checked_redirects(web: FakeWeb) -> None:
    web.route("images.example.com", "/1", httpx.Response(301, headers={"location": "/2"}))
    web.route(
        "images.example.com",
        "/2",
        httpx.Response(302, headers={"location": "https://cdn.example.com:8443/3"}),
    )
    web.route("cdn.example.com:8443", "/3", httpx.Response(307, headers={"location": "4"}))
    web.route("cdn.example.com:8443", "/4", httpx.Response(200, content=_png()))

    assert web.fetch("https://images.example.com/1") == _png()
    assert [r.url.path for r in web.seen] == ["/1", "/2", "/3", "/4"]


def test_fetch_refuses_a_fourth_redirect(web: FakeWeb) -> None:
    for hop in range(4):
        web.route(
            "images.example.com",
            f"/{hop}",
            httpx.Response(302, headers={"location": f"/{hop + 1}"}),
        )
    web.route("images.example.com", "/4", httpx.Response(200, content=_png()))

    with pytest.raises(ValidationFailed, match="redirects more than 3"):
        web.fetch("https://images.example.com/0")
    assert len(web.seen) == 4


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example.com/a.png",  # a name resolving to 192.168.1.10
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/",
        "https://2130706433/",
        "http://images.example.com/a.png",  # downgrade
        "file:///etc/passwd",
    ],
)
def test_a_redirect_to_an_internal_or_non_https_url_is_refused(web: FakeWeb, location: str) -> None:
    web.route("images.example.com", "/a.png", httpx.Response(302, headers={"location": location}))

    with pytest.raises(ValidationFailed):
        web.fetch("https://images.example.com/a.png")
    # Nothing was ever sent anywhere but the first, public address.
    assert [r.url.host for r in web.seen] == [PUBLIC_V4]


def test_fetch_caps_the_size_declared_or_streamed(web: FakeWeb) -> None:
    big = _png(400, 400) + b"\0" * 5000
    web.route("images.example.com", "/declared.png", httpx.Response(200, content=big))

    def undeclared(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([big[:3000], big[3000:]]))

    web.routes[("images.example.com", "/streamed.png")] = undeclared

    for path in ("/declared.png", "/streamed.png"):
        with pytest.raises(ValidationFailed, match="larger than"):
            web.fetch(f"https://images.example.com{path}", max_bytes=4000)


def test_fetch_refuses_content_that_is_not_an_image(web: FakeWeb) -> None:
    web.route("images.example.com", "/page", httpx.Response(200, html="<html>Not an image</html>"))

    with pytest.raises(ValidationFailed, match="readable image"):
        web.fetch("https://images.example.com/page")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(404), ValidationFailed),
        (httpx.Response(403), ValidationFailed),
        (httpx.Response(429), TransientError),
        (httpx.Response(503), TransientError),
        (httpx.ReadTimeout("slow"), TransientError),
        (httpx.RemoteProtocolError("garbage"), TransientError),
        (httpx.ConnectError("refused"), TransientError),
    ],
)
def test_fetch_maps_remote_failures(
    web: FakeWeb, answer: httpx.Response | Exception, error: type[Exception]
) -> None:
    web.route("images.example.com", "/a.png", answer)

    with pytest.raises(error):
        web.fetch("https://images.example.com/a.png")


def test_fetch_tries_the_next_checked_address_when_one_is_unreachable(web: FakeWeb) -> None:
    def first_address_down(request: httpx.Request) -> httpx.Response:
        if request.url.host == PUBLIC_V4:
            raise httpx.ConnectError("no route")
        return httpx.Response(200, content=_png())

    web.routes[("cdn.example.com", "/a.png")] = first_address_down

    assert web.fetch("https://cdn.example.com/a.png") == _png()
    assert [r.url.host for r in web.seen] == [PUBLIC_V4, PUBLIC_V6]


def test_fetch_uses_the_settings_defaults(web: FakeWeb) -> None:
    web.route("images.example.com", "/a.png", httpx.Response(200, content=_png()))

    data = fetch_remote_image(
        "https://images.example.com/a.png",
        resolve=PUBLIC_DNS,
        transport=httpx.MockTransport(web.handler),
    )

    assert data == _png()


# -- the pinning over real TLS -----------------------------------------------------------------


@dataclass
class TLSSite:
    port: int
    ca_file: Path
    server_names: list[str | None]
    hosts: list[str | None]


def _certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf certificate for `name`, as PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "posegen test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "leaf.pem", "leaf.key"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSSite]:
    """An https server on 127.0.0.1 whose certificate names only `images.test`."""
    ca_file, cert_file, key_file = _certificates(tmp_path_factory.mktemp("tls"), "images.test")
    server_names: list[str | None] = []
    hosts: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    png = _png()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(self.headers.get("host"))
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield TLSSite(httpd.server_address[1], ca_file, server_names, hosts)
    finally:
        httpd.shutdown()
        httpd.server_close()


def _pinned_fetch(site: TLSSite, url: str) -> bytes | str:
    """One hop of the real fetch, with the guard's address check replaced by a pre-checked
    address (127.0.0.1 would be refused, and it is the only place a test server can live)."""
    parsed = httpx.URL(url)
    checked = _CheckedURL(parsed, parsed.host, (ip_address("127.0.0.1"),))
    context = ssl.create_default_context(cafile=str(site.ca_file))
    with httpx.Client(verify=context, trust_env=False) as client:
        return _fetch_once(client, checked, 1_000_000, deadline=time.monotonic() + 10)


def test_pinned_tls_connects_to_the_checked_ip_but_verifies_the_host_name(
    tls_site: TLSSite,
) -> None:
    data = _pinned_fetch(tls_site, f"https://images.test:{tls_site.port}/a.png")

    assert data == _png()
    assert tls_site.server_names[-1] == "images.test"
    assert tls_site.hosts[-1] == f"images.test:{tls_site.port}"


def test_pinned_tls_refuses_a_certificate_for_another_name(tls_site: TLSSite) -> None:
    with pytest.raises(TransientError, match="could not be reached"):
        _pinned_fetch(tls_site, f"https://other.test:{tls_site.port}/a.png")
