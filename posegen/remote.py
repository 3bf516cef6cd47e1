"""Owns fetching a user-supplied https image URL safely: the SSRF guard, pinned connects, size caps.

A background image URL comes from a user and is fetched by our workers, which sit next to the
database, the Prefect API and cloud metadata endpoints. So every URL (and every redirect) is
checked before any byte is sent, and the connection goes only to an address that was checked.

How the connection is pinned: the host is resolved once, every address is checked (one bad
address refuses the URL, since a resolver may rotate), and the request is then sent to
``https://<checked-ip>/...`` with the original ``Host`` header and the original name as TLS SNI
(httpx's documented ``sni_hostname`` request extension). Certificate verification runs against
the original host name, so TLS still proves we talk to that host; and no second DNS lookup
happens between check and connect, which is what DNS-rebinding attacks rely on.
"""

from __future__ import annotations

import io
import ipaddress
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from PIL import Image

from posegen.config import get_settings
from posegen.errors import TransientError, ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

MAX_REDIRECTS = 3
_MAX_URL_LENGTH = 2048
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
# Characters of numeric IPv4 spellings that inet_aton accepts (decimal, octal, hex, short forms).
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$")

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
# Not all of these are covered by ipaddress's is_private / is_global on every Python version.
_REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # CGNAT: often the provider's internal services
        "192.0.0.0/24",
        "198.18.0.0/15",
        "240.0.0.0/4",
        "64:ff9b::/96",  # NAT64 would translate to any IPv4, private ones included
        "64:ff9b:1::/48",
        "2001::/23",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
    )
)


class RemoteImageRefused(ValidationFailed):
    """The URL or what it answered is not acceptable; the user has to supply another one."""


class RemoteImageUnavailable(TransientError):
    """The remote host could not be reached or answered with a temporary error; try again later."""


@dataclass(frozen=True, slots=True)
class _CheckedURL:
    url: httpx.URL
    host: str
    addresses: tuple[IPAddress, ...]


def _resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver returns for `host`, in its preferred order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(url: str, *, resolve: Resolver = _resolve) -> None:
    """Refuse (`ValidationFailed`) any URL a worker must not fetch; resolves the host to check."""
    _check(url, resolve)


def fetch_remote_image(
    url: str,
    *,
    max_bytes: int | None = None,
    timeout: float | None = None,
    resolve: Resolver = _resolve,
    transport: httpx.BaseTransport | None = None,
) -> bytes:
    """Download an image from a user's https URL, or raise why not.

    Redirects are followed by hand (at most `MAX_REDIRECTS`) so each hop is checked like the
    first. The body is streamed and cut off at `max_bytes` (default POSEGEN_MAX_UPLOAD_BYTES);
    `timeout` (default POSEGEN_REMOTE_FETCH_TIMEOUT) bounds the whole fetch, not each read.
    Only a minimal "is this an image" check is done here; the caller decodes with its limits.
    `resolve` and `transport` exist for tests.
    """
    settings = get_settings()
    max_bytes = max_bytes if max_bytes is not None else settings.max_upload_bytes
    timeout = timeout if timeout is not None else settings.remote_fetch_timeout
    deadline = time.monotonic() + timeout
    # trust_env=False: an environment proxy would connect on our behalf and defeat the pinning,
    # and .netrc credentials must never go to a user's host.
    with httpx.Client(
        transport=transport, trust_env=False, follow_redirects=False, timeout=timeout
    ) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            checked = _check(url, resolve)
            location = _fetch_once(client, checked, max_bytes, deadline)
            if isinstance(location, bytes):
                _verify_image(location)
                return location
            url = location
    raise RemoteImageRefused(f"The image URL redirects more than {MAX_REDIRECTS} times.")


def _check(url: str, resolve: Resolver) -> _CheckedURL:
    if len(url) > _MAX_URL_LENGTH:
        raise RemoteImageRefused("The image URL is too long.")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise RemoteImageRefused("The image URL is not a valid URL.") from None
    if parts.scheme.lower() != "https":
        raise RemoteImageRefused("Image URLs must start with https://.")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        # httpx rejects some odd IP spellings itself ("0177.0.0.1"); say what they are.
        if _ip_literal(parts.hostname or "") is not None:
            raise _not_public() from None
        raise RemoteImageRefused("The image URL is not a valid URL.") from None
    if parsed.scheme != "https":
        raise RemoteImageRefused("Image URLs must start with https://.")
    if parsed.userinfo:
        raise RemoteImageRefused("Image URLs must not contain a user name or password.")
    host = parsed.host
    if not host:
        raise RemoteImageRefused("The image URL has no host.")
    port = parsed.port or 443
    if not 0 < port < 65536:
        raise RemoteImageRefused("The image URL's port is not valid.")

    literal = _ip_literal(host)
    if literal is not None:
        if _refusal(literal):
            raise _not_public()
        return _CheckedURL(parsed, host, (literal,))

    name = host.rstrip(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise RemoteImageRefused("The image URL's host name is not valid.")
    if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
        raise _not_public()
    try:
        resolved = resolve(name, port)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)):
            raise RemoteImageUnavailable(
                "The image URL's host could not be looked up right now."
            ) from None
        raise RemoteImageRefused("The image URL's host does not exist.") from None
    except OSError:
        raise RemoteImageUnavailable("The image URL's host could not be looked up.") from None
    addresses: list[IPAddress] = []
    for text in resolved:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise _not_public() from None
        if _refusal(address):
            raise _not_public()
        addresses.append(address)
    if not addresses:
        raise RemoteImageRefused("The image URL's host does not exist.")
    return _CheckedURL(parsed, host, tuple(addresses))


def _ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells, in any form a resolver would accept, or None for a name.

    `inet_aton` semantics cover "2130706433", "0177.0.0.1", "0x7f.1" and "127.1", which
    getaddrinfo would happily resolve to 127.0.0.1 although `ipaddress` rejects them.
    """
    host = host.strip("[]").lower()
    if ":" in host and "%" in host:
        # A zone id ("fe80::1%eth0") only exists on link-local addresses.
        return ipaddress.ip_address("fe80::")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host.rstrip(".")) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


def _refusal(address: IPAddress) -> bool:
    """True for every address that is not an ordinary public unicast host."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and _refusal(embedded):
            return True
        if address.teredo is not None:
            return True
        if address.ipv4_mapped is not None:
            return False
    return (
        address in _METADATA_ADDRESSES
        or not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or any(address in network for network in _REFUSED_NETWORKS)
    )


def _not_public() -> RemoteImageRefused:
    return RemoteImageRefused(
        "The image URL points to a private or internal network address; "
        "use a publicly reachable https URL."
    )


def _fetch_once(
    client: httpx.Client, checked: _CheckedURL, max_bytes: int, deadline: float
) -> bytes | str:
    """One pinned GET: the body, or the next URL when the answer is a redirect."""
    last_error: httpx.TransportError | None = None
    for address in checked.addresses:
        try:
            return _get_pinned(client, checked, address, max_bytes, deadline)
        except httpx.ConnectError as exc:
            # Another checked address of the same host may be reachable (e.g. no IPv6 route).
            last_error = exc
        except httpx.TransportError as exc:
            raise RemoteImageUnavailable(
                f"Fetching the image URL failed ({type(exc).__name__})."
            ) from None
    raise RemoteImageUnavailable(
        f"The image URL's host could not be reached ({type(last_error).__name__})."
    )


def _get_pinned(
    client: httpx.Client,
    checked: _CheckedURL,
    address: IPAddress,
    max_bytes: int,
    deadline: float,
) -> bytes | str:
    pinned = checked.url.copy_with(host=str(address))
    headers = {
        "Host": checked.url.netloc.decode("ascii"),
        "Accept": "image/*",
        "User-Agent": "posegen-image-fetch/1",
        # The pool keys connections by IP, so a later hop to another host on the same IP could
        # reuse a TLS session verified for this host's name; one request per connection.
        "Connection": "close",
    }
    # Cookies from an earlier hop are keyed by IP here and must not travel to the next host.
    client.cookies.clear()
    request = client.build_request("GET", pinned, headers=headers, timeout=_remaining(deadline))
    if _ip_literal(checked.host) is None:
        request.extensions["sni_hostname"] = checked.host.rstrip(".")
    response = client.send(request, stream=True)
    try:
        status = response.status_code
        if status in _REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise RemoteImageRefused("The image URL redirects without saying where.")
            return str(checked.url.join(location))
        if status == 429 or status >= 500:
            raise RemoteImageUnavailable(f"The image URL answered HTTP {status}; try again later.")
        if status != 200:
            raise RemoteImageRefused(f"The image URL answered HTTP {status} instead of an image.")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(max_bytes)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            if time.monotonic() > deadline:
                raise RemoteImageUnavailable("Fetching the image URL took too long.")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        response.close()


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RemoteImageUnavailable("Fetching the image URL took too long.")
    return remaining


def _too_large(max_bytes: int) -> RemoteImageRefused:
    return RemoteImageRefused(f"The image is larger than {max_bytes // (1024 * 1024)} MB.")


def _verify_image(data: bytes) -> None:
    """Cheap structural check so an HTML error page never reaches the compositor."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception:
        raise RemoteImageRefused("The image URL did not return a readable image.") from None
