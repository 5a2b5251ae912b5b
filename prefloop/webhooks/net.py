"""Outgoing HTTP for webhooks, with the SSRF rules (no Django in here; docs/webhooks.md).

- Only http and https, no user:password@ in the URL, the host must match the host allowlist.
- The host is resolved once; EVERY address it resolves to must be public (global unicast) or
  inside an allowed CIDR: loopback, private, link-local (169.254.169.254, the cloud metadata
  address), shared, multicast, reserved and unspecified addresses are refused otherwise. An
  IPv4-mapped IPv6 address is judged as the IPv4 address it maps.
- The connection goes to the address that was checked (no second lookup, so no DNS-rebinding
  gap), while the Host header and TLS SNI/certificate check use the URL's host name.
- Redirects: only 307 and 308 are followed (they keep the POST and its body), at most
  `max_redirects` hops, and each hop's URL is checked from the start exactly like the first.
  Any other 3xx is returned to the caller as the answer (a failed delivery, not followed).
- Bounded: `timeout` seconds per socket operation and for the whole exchange, at most
  `max_response_bytes` of the answer are read.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_CHARS = 2000
REDIRECTS_FOLLOWED = (307, 308)


class TargetRefused(Exception):
    """The URL may not be called (scheme, host or address): permanent, never retried."""


class DeliveryError(Exception):
    """The call did not produce an answer (connection refused, timeout, DNS failure): retried."""


@dataclass(frozen=True)
class Rules:
    allowed_hosts: tuple[str, ...] = ("*",)
    allowed_networks: tuple[IPNetwork, ...] = ()
    timeout: float = 10.0
    max_response_bytes: int = 64 * 1024
    max_redirects: int = 3
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower case, IDNA-encoded, no brackets around an IPv6 literal
    port: int
    path: str  # path and query


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    elapsed_ms: int
    url: str  # the URL that answered (after any redirects followed)


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """ "10.0.0.0/8", "127.0.0.1" (a /32), "::1" → networks; a bad entry raises ValueError naming it."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"PREFLOOP_WEBHOOK_ALLOWED_CIDRS: {value!r} is not an address or CIDR") from None
    return tuple(networks)


def parse_target(url: str) -> Target:
    """The URL's parts, or TargetRefused saying what is wrong with it."""
    if len(url) > MAX_URL_CHARS:
        raise TargetRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused(f"only http and https URLs are allowed, not {scheme or 'no scheme'!r}")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("credentials in the URL (user:password@) are not allowed; sign with the secret instead")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefused("the URL has no host")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise TargetRefused(f"the host {host!r} is not a valid name") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def host_allowed(host: str, rules: Rules) -> bool:
    """ "*" allows every host; "example.org" that host; "*.example.org" its subdomains."""
    for pattern in rules.allowed_hosts:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def address_kind(ip: IPAddress) -> str:
    """Why an address is not public ("" when it is)."""
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    )
    for name, hit in checks:
        if hit:
            return name
    return "" if ip.is_global else "non-public"


def address_allowed(ip: IPAddress, rules: Rules) -> tuple[bool, str]:
    """(allowed, the kind of address when it is not public)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in rules.allowed_networks):
        return True, ""
    kind = address_kind(ip)
    return not kind, kind


def check_target(target: Target, rules: Rules) -> None:
    """What can be checked without DNS: the host allowlist, and an address written in the URL."""
    if not host_allowed(target.host, rules):
        raise TargetRefused(f"{target.host} is not in PREFLOOP_WEBHOOK_ALLOWED_HOSTS")
    literal = _literal(target.host)
    if literal is not None:
        _check_address(target.host, literal, rules)


def resolve(target: Target, rules: Rules) -> IPAddress:
    """The address to connect to: every address of the host must be allowed (a name with one
    private answer among public ones is refused), and the first is used."""
    check_target(target, rules)
    literal = _literal(target.host)
    if literal is not None:
        return literal
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DeliveryError(f"cannot resolve {target.host}: {exc}") from None
    addresses = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        _check_address(target.host, ip, rules)
        addresses.append(ip)
    if not addresses:
        raise DeliveryError(f"{target.host} has no address")
    return addresses[0]


def post(url: str, body: bytes, headers: dict[str, str], rules: Rules) -> Answer:
    """POST `body` to `url` under `rules`, following 307/308 redirects (each hop checked)."""
    deadline = time.monotonic() + rules.timeout
    for _hop in range(rules.max_redirects + 1):
        target = parse_target(url)
        ip = resolve(target, rules)
        answer = _send(target, ip, body, headers, rules, deadline)
        answer.url = url
        location = answer.headers.get("location", "")
        if answer.status not in REDIRECTS_FOLLOWED or not location:
            return answer
        url = urljoin(url, location)
    raise TargetRefused(f"more than {rules.max_redirects} redirects")


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _check_address(host: str, ip: IPAddress, rules: Rules) -> None:
    ok, kind = address_allowed(ip, rules)
    if not ok:
        shown = host if host == str(ip) else f"{host} resolves to {ip}, which"
        raise TargetRefused(f"{shown} is a {kind} address (not in PREFLOOP_WEBHOOK_ALLOWED_CIDRS)")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address; Host stays the URL's host."""

    def __init__(self, host: str, port: int, *, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the checked address; SNI and the certificate check use the URL's host."""

    def __init__(self, host: str, port: int, *, ip: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._ip, self._ctx = ip, context

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def _send(target: Target, ip: IPAddress, body: bytes, headers: dict[str, str], rules: Rules, deadline: float) -> Answer:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeliveryError(f"no answer within {rules.timeout:g} s")
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        context = rules.ssl_context or ssl.create_default_context()
        conn = _PinnedHTTPSConnection(target.host, target.port, ip=str(ip), timeout=remaining, context=context)
    else:
        conn = _PinnedHTTPConnection(target.host, target.port, ip=str(ip), timeout=remaining)
    started = time.monotonic()
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        data = _read_bounded(response, rules.max_response_bytes, deadline)
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    except TimeoutError:
        raise DeliveryError(f"no answer within {rules.timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
    return Answer(response.status, data, answer_headers, int((time.monotonic() - started) * 1000), "")


def _read_bounded(response: http.client.HTTPResponse, limit: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = (
            response.read1(min(8192, limit - size))
            if hasattr(response, "read1")
            else response.read(min(8192, limit - size))
        )
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
