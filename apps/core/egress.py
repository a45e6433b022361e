"""The one outbound HTTP client: it reaches the host it was built for, at an address it
checked, and nowhere else.

A URL a user could influence plus a credential is an exfiltration and SSRF primitive. Every
call to a model server goes through `build_opener(base_url=…)`, which:

- resolves the host itself and refuses loopback, link-local (the cloud metadata address
  among them), private, shared, reserved, multicast and unspecified addresses, unless the
  endpoint was explicitly allowed a private address (an on-premises server) — and even then
  never the metadata addresses; it connects to the address it checked, so a DNS answer that
  changes between the check and the connection cannot win (no second lookup);
- follows a redirect only to the same scheme, host and port (so an Authorization header
  never leaves its host), at most `MAX_REDIRECTS` times;
- ignores the *_proxy and NO_PROXY environment variables; a proxy is used only when the
  caller names one (the registry endpoint's own setting), and then the proxy's address is
  what gets checked;
- refuses a request for any other host than the one it was built for.

`EgressRefused` is deliberately not an `OSError`: a refusal is final, never retried as a
network failure. Its `message` is safe to show (no credentials, no headers).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.error
import urllib.parse
import urllib.request

MAX_REDIRECTS = 3
SCHEMES = ("http", "https")
# Cloud metadata services: refused even where private addresses are allowed.
METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
SHARED = ipaddress.ip_network("100.64.0.0/10")


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
    return parts


def host_of(url: str) -> str:
    """Lower-cased host[:port] of an http(s) URL (the port only when given explicitly)."""
    parts = _split(url)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a literal host names, in any form the C resolver accepts (2130706433,
    0177.0.0.1, 0x7f.1, 127.1), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # inet_aton takes the decimal, octal, hex and short IPv4 forms
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError):
        return None


def address_problem(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool
) -> str | None:
    """Why `address` may not be contacted, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return f"{address} is a cloud metadata address."
    if address.is_unspecified or address.is_multicast:
        return f"{address} is not a host address."
    private = (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address in SHARED
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )
    if private and not allow_private:
        return (
            f"{address} is a loopback, private or reserved address; an operator may allow a "
            "private address for an on-premises endpoint."
        )
    if address.is_reserved and not (address.is_private or address.is_loopback):
        return f"{address} is a reserved address."
    return None


def _resolve(host: str, port: int) -> list[tuple]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise EgressRefused(f"The host {host} could not be resolved.") from None


def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[tuple]:
    """getaddrinfo results for host:port, all of them checked; refuse if any is refused."""
    literal = _literal(host)
    if literal is not None:
        problem = address_problem(literal, allow_private=allow_private)
        if problem:
            raise EgressRefused(problem)
    infos = _resolve(host, port)
    if not infos:
        raise EgressRefused(f"The host {host} could not be resolved.")
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise EgressRefused(f"{host} resolves to {problem}")
    return infos


def check_url(url: str, *, allow_private: bool = False, resolve: bool = True) -> None:
    """Refuse `url` unless it is http(s), has a host and no userinfo, and (with `resolve`)
    every address its host resolves to may be contacted."""
    parts = _split(url)
    host = parts.hostname
    literal = _literal(host)
    if literal is not None:
        problem = address_problem(literal, allow_private=allow_private)
        if problem:
            raise EgressRefused(problem)
    elif not allow_private and (host.lower() == "localhost" or host.lower().endswith(".localhost")):
        raise EgressRefused("localhost is a loopback address.")
    if resolve:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        checked_addresses(host, port, allow_private=allow_private)


def _connect(host: str, port: int, timeout, source_address, *, allow_private: bool):
    """A socket to the first checked address of host:port that answers."""
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


class _CheckedHTTPConnection(http.client.HTTPConnection):
    allow_private = False

    def connect(self):
        self.sock = _connect(
            self.host,
            self.port,
            self.timeout,
            self.source_address,
            allow_private=self.allow_private,
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tunnel_host:
            self._tunnel()


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    allow_private = False

    def connect(self):
        sock = _connect(
            self.host,
            self.port,
            self.timeout,
            self.source_address,
            allow_private=self.allow_private,
        )
        if self._tunnel_host:
            self.sock = sock
            self._tunnel()
            server_hostname = self._tunnel_host
        else:
            server_hostname = self.host
        # The certificate is verified against the name, not the address we connected to.
        self.sock = self._context.wrap_socket(
            self.sock if self._tunnel_host else sock, server_hostname=server_hostname
        )


def _connection_class(base, allow_private: bool):
    return type(base.__name__, (base,), {"allow_private": allow_private})


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, allow_private: bool):
        super().__init__()
        self._connection = _connection_class(_CheckedHTTPConnection, allow_private)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, allow_private: bool):
        super().__init__()
        self._connection = _connection_class(_CheckedHTTPSConnection, allow_private)

    def https_open(self, req):
        return self.do_open(self._connection, req, context=self._context)


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, origin: tuple[str, str]):
        super().__init__()
        self.origin = origin

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl))
        if (target.scheme.lower(), _netloc(target)) != self.origin:
            fp.close()
            raise EgressRefused(
                f"The endpoint answered {code} with a redirect to another host; "
                "redirects leave the endpoint's host and are not followed."
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _OnlyOrigin(urllib.request.BaseHandler):
    """Refuse any request for another scheme, host or port than the opener's own."""

    handler_order = 100  # before everything else

    def __init__(self, origin: tuple[str, str]):
        self.origin = origin

    def _check(self, req):
        target = urllib.parse.urlsplit(req.full_url)
        if (target.scheme.lower(), _netloc(target)) != self.origin:
            raise EgressRefused("This client may only call its endpoint's own host.")
        return req

    http_request = https_request = _check


def _netloc(parts: urllib.parse.SplitResult) -> str:
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def build_opener(
    *, base_url: str, allow_private: bool = False, proxy: str = ""
) -> urllib.request.OpenerDirector:
    """An opener that reaches `base_url`'s host only, at checked addresses (see the module)."""
    parts = _split(base_url)
    origin = (parts.scheme.lower(), _netloc(parts))
    handlers: list = [_OnlyOrigin(origin), _SameHostRedirects(origin)]
    if proxy:
        _split(proxy)
        # The operator chose the proxy: its address is what the connection checks.
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
        handlers += [_HTTPHandler(True), _HTTPSHandler(True)]
    else:
        handlers.append(urllib.request.ProxyHandler({}))  # never the *_proxy variables
        handlers += [_HTTPHandler(allow_private), _HTTPSHandler(allow_private)]
    return urllib.request.build_opener(*handlers)
