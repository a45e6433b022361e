"""The one outbound HTTP client: it reaches the host it was built for, at an address it
checked, and nowhere else.

A URL a user could influence plus a credential is an exfiltration and SSRF primitive. Every
call to a model server goes through `build_opener(base_url=…)`, which:

- resolves the host itself and refuses loopback, link-local (the cloud metadata address
  among them), private, shared, reserved, multicast and unspecified addresses, unless the
  endpoint was explicitly allowed a private address (an on-premises server) — and even then
  never the metadata addresses; it connects to the address it checked, so a DNS answer that
  changes between the check and the connection cannot win (no second lookup);
- verifies an https server's certificate against the host name, not the address;
- follows a redirect only to the same scheme, host and port (so an Authorization header
  never leaves its host), at most `MAX_REDIRECTS` times;
- ignores the *_proxy and NO_PROXY environment variables; a proxy is used only when the
  caller names one (the registry endpoint's own setting), and then the proxy's address is
  what gets checked (loopback and private proxies are allowed, the operator chose it);
- refuses a request for any other scheme, host or port than the one it was built for, both
  when the request is opened and again when the socket is about to connect.

`EgressRefused` is deliberately a plain `Exception`, not an `OSError` (nor a `URLError`): a
refusal is final and must never be retried as a network failure. Callers catch it before
`OSError`. Its `message` is safe to show (no credentials, no headers).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 3
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
# Cloud metadata services: refused even where private addresses are allowed.
METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
# What `allow_private` opens besides loopback and link-local: site networks an on-premises
# model server may live on. Everything else that is not globally routable stays refused.
LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # shared (carrier-grade NAT, also overlay networks)
        "fc00::/7",
        "fec0::/10",  # deprecated site-local
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(Exception):
    """An outbound address or request this server will not make; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _split(url: str) -> urllib.parse.SplitResult:
    try:
        parts = urllib.parse.urlsplit((url or "").strip())
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise EgressRefused(f"Not a valid address: {exc}.") from None
    if parts.scheme.lower() not in SCHEMES:
        raise EgressRefused("Only http:// and https:// addresses may be called.")
    if not parts.hostname:
        raise EgressRefused("The address has no host.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EgressRefused("Credentials in the address are not allowed; bind a credential.")
    if any(char.isspace() or char in "\\%" or ord(char) < 32 for char in parts.netloc):
        raise EgressRefused("The address's host contains characters a host name cannot.")
    return parts


def _port(parts: urllib.parse.SplitResult) -> int:
    return parts.port if parts.port is not None else DEFAULT_PORTS[parts.scheme.lower()]


def host_of(url: str) -> str:
    """Lower-cased host[:port] of an http(s) URL (the port only when given explicitly)."""
    parts = _split(url)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port is not None else host


def _literal(host: str) -> Address | None:
    """The address a literal host names, in any form the C resolver accepts (2130706433,
    0177.0.0.1, 0x7f.1, 127.1), or None for a name."""
    host = host.rstrip(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # inet_aton takes the decimal, octal, hex and short IPv4 forms
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError, ValueError):
        return None


def _unwrap(address: Address) -> Address:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, NAT64), or the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def address_problem(address: Address, *, allow_private: bool) -> str | None:
    """Why `address` may not be contacted, or None."""
    address = _unwrap(address)
    if address in METADATA:
        return f"{address} is a cloud metadata address."
    if address.is_unspecified or address.is_multicast:
        return f"{address} is not a host address."
    if (
        address.is_loopback
        or address.is_link_local
        or any(address in network for network in LOCAL_NETWORKS)
    ):
        if allow_private:
            return None
        return (
            f"{address} is a loopback, link-local or private address; an operator may allow "
            "a private address for an on-premises endpoint."
        )
    if address.is_reserved or address.is_private or not address.is_global:
        return f"{address} is a reserved or special-purpose address."
    return None


def _refuse_if_bad(address: Address, *, allow_private: bool, prefix: str = "") -> None:
    problem = address_problem(address, allow_private=allow_private)
    if problem:
        raise EgressRefused(prefix + problem)


def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[tuple]:
    """getaddrinfo results for host:port (IPv4 and IPv6), every one checked; refuse if any
    is refused or if the name does not resolve."""
    literal = _literal(host)
    if literal is not None:
        _refuse_if_bad(literal, allow_private=allow_private)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    if not infos:
        raise EgressRefused(f"The host {host} could not be resolved.")
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        _refuse_if_bad(address, allow_private=allow_private, prefix=f"{host} resolves to ")
    return infos


def check_url(url: str, *, allow_private: bool = False, resolve: bool = True) -> None:
    """Refuse `url` unless it is http(s), has a host and no userinfo, and (with `resolve`)
    every address its host resolves to may be contacted."""
    parts = _split(url)
    host = parts.hostname
    literal = _literal(host)
    name = host.lower().rstrip(".")
    if literal is not None:
        _refuse_if_bad(literal, allow_private=allow_private)
    elif not allow_private and (name == "localhost" or name.endswith(".localhost")):
        raise EgressRefused("localhost is a loopback address.")
    if resolve:
        checked_addresses(host, _port(parts), allow_private=allow_private)


# --- the opener ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    """Where an opener's connections may go: the origin, or the operator's proxy."""

    scheme: str
    host: str
    port: int
    allow_private: bool
    proxy_host: str | None = None
    proxy_port: int | None = None  # None: whatever port urllib picks for the proxy

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def _origin(url: str) -> tuple[str, str, int]:
    parts = _split(url)
    return (parts.scheme.lower(), parts.hostname.lower(), _port(parts))


def _elsewhere() -> EgressRefused:
    return EgressRefused("This client may only call its endpoint's own host.")


def _connect(host: str, port: int, timeout, source_address, *, allow_private: bool):
    """A socket to the first checked address of host:port that answers (no second lookup)."""
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in checked_addresses(
        host, port, allow_private=allow_private
    ):
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            last = exc
            sock.close()
    raise last or OSError(f"could not connect to {host}:{port}")


class _CheckedConnection:
    """Mixin for http.client connections: connect only where the route allows, at an
    address checked just now."""

    route: _Route
    host: str
    port: int
    timeout: float | None
    source_address: tuple[str, int] | None
    _tunnel_host: str | None
    _tunnel_port: int | None

    def __init__(self, *args, route: _Route, **kwargs):
        super().__init__(*args, **kwargs)
        self.route = route

    def _checked_socket(self) -> socket.socket:
        route = self.route
        here = (self.host.lower(), self.port)
        if route.proxy_host is None:
            if self._tunnel_host or here != (route.host, route.port):
                raise _elsewhere()
            allow_private = route.allow_private
        else:
            if self.host.lower() != route.proxy_host or route.proxy_port not in (
                None,
                self.port,
            ):
                raise _elsewhere()
            if self._tunnel_host and (self._tunnel_host.lower(), self._tunnel_port) != (
                route.host,
                route.port,
            ):
                raise _elsewhere()
            allow_private = True  # the operator chose the proxy; metadata stays refused
        sys.audit("http.client.connect", self, self.host, self.port)
        sock = _connect(
            self.host, self.port, self.timeout, self.source_address, allow_private=allow_private
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class _CheckedHTTPConnection(_CheckedConnection, http.client.HTTPConnection):
    def connect(self):
        self.sock = self._checked_socket()
        if self._tunnel_host:
            self._tunnel()


class _CheckedHTTPSConnection(_CheckedConnection, http.client.HTTPSConnection):
    def connect(self):
        self.sock = self._checked_socket()
        if self._tunnel_host:
            self._tunnel()
            server_hostname = self._tunnel_host
        else:
            server_hostname = self.host
        # The certificate is verified against the name, not the address we connected to.
        self.sock = self._context.wrap_socket(self.sock, server_hostname=server_hostname)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, route: _Route):
        super().__init__()
        self.route = route

    def http_open(self, req):
        return self.do_open(_CheckedHTTPConnection, req, route=self.route)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, route: _Route):
        super().__init__()
        self.route = route

    def https_open(self, req):
        return self.do_open(_CheckedHTTPSConnection, req, context=self._context, route=self.route)


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, origin: tuple[str, str, int]):
        super().__init__()
        self.origin = origin

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            same = _origin(urllib.parse.urljoin(req.full_url, newurl)) == self.origin
        except EgressRefused:
            same = False
        if not same:
            fp.close()
            raise EgressRefused(
                f"The endpoint answered {code} with a redirect to another address; "
                "redirects that leave the endpoint's host are not followed."
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _EgressOpener(urllib.request.OpenerDirector):
    """Opens only URLs on its origin (redirects come back through `open` too)."""

    def __init__(self, origin: tuple[str, str, int]):
        super().__init__()
        self.origin = origin

    def open(self, fullurl, data=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT):  # type: ignore[attr-defined]
        url = fullurl.full_url if isinstance(fullurl, urllib.request.Request) else fullurl
        if _origin(url) != self.origin:
            raise _elsewhere()
        return super().open(fullurl, data, timeout)


def build_opener(
    *, base_url: str, allow_private: bool = False, proxy: str = ""
) -> urllib.request.OpenerDirector:
    """An opener that reaches `base_url`'s host only, at checked addresses (see the module)."""
    scheme, host, port = _origin(base_url)
    if proxy:
        proxy_parts = _split(proxy)
        route = _Route(
            scheme,
            host,
            port,
            allow_private,
            proxy_host=proxy_parts.hostname.lower(),
            proxy_port=proxy_parts.port,
        )
        proxies = {"http": proxy, "https": proxy}
    else:
        route = _Route(scheme, host, port, allow_private)
        proxies = {}  # never the *_proxy variables
    opener = _EgressOpener(route.origin)
    # No file:, ftp: or data: handlers: only http(s) to the origin can be opened at all.
    for handler in (
        urllib.request.ProxyHandler(proxies),
        urllib.request.UnknownHandler(),
        _HTTPHandler(route),
        _HTTPSHandler(route),
        urllib.request.HTTPDefaultErrorHandler(),
        _SameHostRedirects(route.origin),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener
