"""The egress client: which addresses it refuses, and what it will not do on the wire.

Every server here listens on the loopback; nothing leaves the machine. Names are resolved by
a stand-in for socket.getaddrinfo, never by a real DNS."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from apps.core import egress

REAL_GETADDRINFO = socket.getaddrinfo


class Server:
    """A loopback HTTP(S) server that records requests; `answer` decides the response."""

    def __init__(self, answer=None, *, tls: ssl.SSLContext | None = None):
        heard = self.heard = []
        reply = answer or (lambda handler: (200, {}, b'{"ok": true}'))

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                heard.append((self.command, self.path, dict(self.headers)))
                status, headers, body = reply(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_CONNECT = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2)


@pytest.fixture
def serve():
    """Start loopback servers; all of them are shut down after the test."""
    started = []

    def start(answer=None, **kwargs):
        started.append(Server(answer, **kwargs))
        return started[-1]

    yield start
    for running in started:
        running.close()


@pytest.fixture
def server(serve):
    return serve()


@pytest.fixture
def dns(monkeypatch):
    """Names resolve to what the test says (`dns["models.example.com"] = ["8.8.8.8"]`);
    literal addresses resolve as usual; any other name does not resolve."""
    names: dict[str, list[str]] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (address, port),
                )
                for address in names[host]
            ]
        if egress._literal(host) is None and ":" not in host:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(egress.socket, "getaddrinfo", getaddrinfo)
    return names


def _post(opener, url, headers=None):
    request = urllib.request.Request(url, data=b"{}", headers=headers or {}, method="POST")
    with opener.open(request, timeout=5) as response:
        return response.status, json.loads(response.read())


# --- check_url -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/v1",
        "http://localhost/v1",
        "http://LOCALHOST./v1",
        "http://[::1]/v1",
        "http://0.0.0.0/v1",
        "http://[::]/v1",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.0.0.1/",
        "http://0x7f000001/",
        "http://127.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::7f00:1]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[fc00::1]/",
        "http://[fe80::1]/",
        "http://[ff02::1]/",
        "file:///etc/passwd",
        "gopher://example.com:70/",
        "ftp://example.com/",
        "http://user:pass@example.com/",
        "http://token@example.com/",
        "http://example.com\\@127.0.0.1/",
        "http:///v1",
        "http://:80/v1",
        "",
    ],
)
def test_refused_addresses(url, dns):
    for resolve in (False, True):
        with pytest.raises(egress.EgressRefused) as refused:
            egress.check_url(url, resolve=resolve)
        assert refused.value.message
        assert "could not be resolved" not in refused.value.message  # refused on sight
        assert not isinstance(refused.value, OSError)  # never retried as a network error


def test_credentials_in_a_refused_url_are_not_repeated():
    with pytest.raises(egress.EgressRefused) as refused:
        egress.check_url("http://admin:hunter2@example.com/")
    assert "hunter2" not in refused.value.message
    assert "hunter2" not in str(refused.value)


def test_public_addresses_pass(dns):
    dns["models.example.com"] = ["8.8.8.8", "2606:4700::1111"]
    egress.check_url("https://models.example.com/v1")
    egress.check_url("http://8.8.8.8:8080/v1")
    egress.check_url("https://[2606:4700::1111]/v1")


def test_a_name_that_resolves_to_a_private_address_is_refused(dns):
    dns["models.example.com"] = ["10.0.0.7"]
    with pytest.raises(egress.EgressRefused) as refused:
        egress.check_url("https://models.example.com/v1")
    assert "10.0.0.7" in refused.value.message
    egress.check_url("https://models.example.com/v1", resolve=False)  # syntax alone is fine


def test_one_private_answer_among_public_ones_is_enough_to_refuse(dns):
    dns["models.example.com"] = ["8.8.8.8", "::ffff:127.0.0.1"]
    with pytest.raises(egress.EgressRefused, match="127.0.0.1"):
        egress.check_url("https://models.example.com/v1")


def test_an_unresolvable_name_is_refused_when_resolving(dns):
    with pytest.raises(egress.EgressRefused, match="could not be resolved"):
        egress.check_url("https://nowhere.example/v1")


def test_the_private_allowance_never_covers_metadata_unspecified_or_multicast(dns):
    dns["localhost"] = ["127.0.0.1", "::1"]
    egress.check_url("http://127.0.0.1:8000/v1", allow_private=True)
    egress.check_url("http://localhost:8000/v1", allow_private=True)
    egress.check_url("http://10.0.0.1/v1", allow_private=True)
    egress.check_url("http://[fd12::1]/v1", allow_private=True)
    for url in (
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
    ):
        with pytest.raises(egress.EgressRefused):
            egress.check_url(url, allow_private=True)
    dns["metadata.internal"] = ["169.254.169.254"]
    with pytest.raises(egress.EgressRefused, match="metadata"):
        egress.check_url("http://metadata.internal/", allow_private=True)


def test_host_of():
    assert egress.host_of("HTTPS://API.Example.com/v1") == "api.example.com"
    assert egress.host_of("http://127.0.0.1:8080/v1") == "127.0.0.1:8080"
    assert egress.host_of("https://api.example.com:443/v1") == "api.example.com:443"
    assert egress.host_of("http://[::1]:8000/") == "[::1]:8000"
    with pytest.raises(egress.EgressRefused):
        egress.host_of("ftp://example.com/")


# --- the opener ----------------------------------------------------------------------------


def test_an_allowed_private_server_is_reached(server):
    opener = egress.build_opener(base_url=f"{server.url}/v1", allow_private=True)
    assert _post(opener, f"{server.url}/v1/chat/completions") == (200, {"ok": True})
    assert [(method, path) for method, path, _ in server.heard] == [
        ("POST", "/v1/chat/completions")
    ]


def test_a_private_server_is_refused_without_the_allowance(server):
    opener = egress.build_opener(base_url=f"{server.url}/v1")
    with pytest.raises(egress.EgressRefused, match="127.0.0.1"):
        _post(opener, f"{server.url}/v1/chat/completions")
    assert server.heard == []


def test_the_address_is_checked_again_at_connect_time(dns):
    """The name looked public when the endpoint was saved; by the time of the call it
    resolves to the loopback: the connection is refused and the listener hears nothing."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        dns["models.example.com"] = ["8.8.8.8"]
        egress.check_url(f"http://models.example.com:{port}/v1")  # passes at save time

        dns["models.example.com"] = ["127.0.0.1"]
        opener = egress.build_opener(base_url=f"http://models.example.com:{port}/v1")
        with pytest.raises(egress.EgressRefused, match="127.0.0.1"):
            _post(opener, f"http://models.example.com:{port}/v1/chat/completions")
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection ever reached it
    finally:
        listener.close()


def test_the_opener_connects_to_the_address_it_checked(server, dns, monkeypatch):
    """One lookup per connection: the answer that was checked is the one connected to."""
    dns["models.internal"] = ["127.0.0.1"]
    lookups = []
    stub = egress.socket.getaddrinfo

    def counting(host, *args, **kwargs):
        lookups.append(host)
        return stub(host, *args, **kwargs)

    monkeypatch.setattr(egress.socket, "getaddrinfo", counting)
    opener = egress.build_opener(
        base_url=f"http://models.internal:{server.port}/v1", allow_private=True
    )
    assert _post(opener, f"http://models.internal:{server.port}/v1/x")[0] == 200
    assert lookups == ["models.internal"]
    assert server.heard[0][2]["Host"] == f"models.internal:{server.port}"


def test_a_redirect_to_another_host_is_not_followed(serve):
    elsewhere = serve()
    origin = serve(lambda handler: (307, {"Location": f"{elsewhere.url}/stolen"}, b""))
    opener = egress.build_opener(base_url=f"{origin.url}/v1", allow_private=True)
    for open_it in (
        lambda: _post(opener, f"{origin.url}/v1/x", {"Authorization": "Bearer secret"}),
        lambda: opener.open(
            urllib.request.Request(
                f"{origin.url}/v1/x", headers={"Authorization": "Bearer secret"}
            ),
            timeout=5,
        ),
    ):
        with pytest.raises(egress.EgressRefused, match="redirect"):
            open_it()
    assert len(origin.heard) == 2
    assert elsewhere.heard == []  # and so no Authorization header ever reached it


def test_a_redirect_to_another_scheme_on_the_same_host_is_not_followed(serve):
    origin = serve(lambda handler: (302, {"Location": f"https://127.0.0.1:{port}/v1/y"}, b""))
    port = origin.port
    opener = egress.build_opener(base_url=f"{origin.url}/v1", allow_private=True)
    with pytest.raises(egress.EgressRefused, match="redirect"):
        opener.open(f"{origin.url}/v1/x", timeout=5)
    assert len(origin.heard) == 1


def test_a_redirect_on_the_same_host_is_followed(serve):
    def answer(handler):
        if handler.path == "/v1/old":
            return 302, {"Location": "/v1/new"}, b""
        return 200, {}, b'{"ok": true}'

    origin = serve(answer)
    opener = egress.build_opener(base_url=f"{origin.url}/v1", allow_private=True)
    request = urllib.request.Request(
        f"{origin.url}/v1/old", headers={"Authorization": "Bearer secret"}
    )
    with opener.open(request, timeout=5) as response:  # urllib follows GETs
        assert response.status == 200
    assert [path for _, path, _ in origin.heard] == ["/v1/old", "/v1/new"]
    assert origin.heard[1][2]["Authorization"] == "Bearer secret"


def test_redirects_stop_after_three(serve):
    def answer(handler):
        step = int(handler.path.rsplit("/", 1)[1])
        return 302, {"Location": f"/v1/{step + 1}"}, b""

    origin = serve(answer)
    opener = egress.build_opener(base_url=f"{origin.url}/v1", allow_private=True)
    with pytest.raises(urllib.error.HTTPError) as failed:
        opener.open(f"{origin.url}/v1/0", timeout=5)
    failed.value.close()
    assert [path for _, path, _ in origin.heard] == ["/v1/0", "/v1/1", "/v1/2", "/v1/3"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:{port}/v1/x",
        "http://127.0.0.1:{other}/v1/x",
        "https://127.0.0.1:{port}/v1/x",
        "http://user@127.0.0.1:{port}/v1/x",
        "file:///etc/passwd",
        "ftp://127.0.0.1:{port}/",
        "data:,hello",
    ],
)
def test_a_request_for_anything_but_the_origin_is_refused(server, url):
    opener = egress.build_opener(base_url=f"{server.url}/v1", allow_private=True)
    with pytest.raises(egress.EgressRefused):
        opener.open(url.format(port=server.port, other=server.port + 1), timeout=5)
    assert server.heard == []


def test_errors_still_arrive_as_http_errors(serve):
    origin = serve(lambda handler: (429, {"Retry-After": "1"}, b'{"error": "slow down"}'))
    opener = egress.build_opener(base_url=f"{origin.url}/v1", allow_private=True)
    with pytest.raises(urllib.error.HTTPError) as failed:
        _post(opener, f"{origin.url}/v1/x")
    assert failed.value.code == 429
    assert failed.value.headers["Retry-After"] == "1"
    failed.value.close()


def test_proxy_variables_from_the_environment_are_ignored(serve, monkeypatch):
    server, trap = serve(), serve()
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, trap.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    opener = egress.build_opener(base_url=f"{server.url}/v1", allow_private=True)
    assert _post(opener, f"{server.url}/v1/x")[0] == 200
    assert trap.heard == []
    assert len(server.heard) == 1


def test_an_explicit_proxy_is_used(serve, dns):
    server, proxy = serve(), serve()
    opener = egress.build_opener(base_url="http://models.internal/v1", proxy=proxy.url)
    assert _post(opener, "http://models.internal/v1/x")[0] == 200
    assert [path for _, path, _ in proxy.heard] == ["http://models.internal/v1/x"]
    assert server.heard == []


def test_a_proxy_at_the_metadata_address_is_refused(dns):
    opener = egress.build_opener(
        base_url="http://models.internal/v1", proxy="http://169.254.169.254:3128"
    )
    with pytest.raises(egress.EgressRefused, match="metadata"):
        _post(opener, "http://models.internal/v1/x")


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for models.test (and nothing else), made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=models.test", "-addext", "subjectAltName=DNS:models.test",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


def test_https_verifies_the_certificate_against_the_name_not_the_address(
    serve, dns, monkeypatch, certificate
):
    cert, context = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust only the test certificate
    server = serve(tls=context)
    dns["models.test"] = ["127.0.0.1"]
    dns["impostor.test"] = ["127.0.0.1"]

    opener = egress.build_opener(
        base_url=f"https://models.test:{server.port}/v1", allow_private=True
    )
    assert _post(opener, f"https://models.test:{server.port}/v1/x") == (200, {"ok": True})

    impostor = egress.build_opener(
        base_url=f"https://impostor.test:{server.port}/v1", allow_private=True
    )
    with pytest.raises(urllib.error.URLError) as failed:
        _post(impostor, f"https://impostor.test:{server.port}/v1/x")
    assert isinstance(failed.value.reason, ssl.SSLCertVerificationError)
    assert len(server.heard) == 1

    refused = egress.build_opener(base_url=f"https://models.test:{server.port}/v1")
    with pytest.raises(egress.EgressRefused):
        _post(refused, f"https://models.test:{server.port}/v1/x")
    assert len(server.heard) == 1
