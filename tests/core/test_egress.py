"""The egress client: which addresses it refuses, and what it will not do on the wire.

Every server here listens on the loopback; nothing leaves the machine."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.request

import pytest

from apps.core import egress


class Server:
    """A loopback HTTP server that records requests; `answer` decides the response."""

    def __init__(self, answer=None):
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
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/v1",
        "http://localhost/v1",
        "http://[::1]/v1",
        "http://0.0.0.0/v1",
        "http://169.254.169.254/latest/meta-data",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.0.0.1/",
        "http://127.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://[fc00::1]/",
        "http://[fe80::1]/",
        "file:///etc/passwd",
        "gopher://example.com:70/",
        "ftp://example.com/",
        "http://user:pass@example.com/",
        "http:///v1",
        "",
    ],
)
def test_refused_addresses(url):
    with pytest.raises(egress.EgressRefused):
        egress.check_url(url)


def test_a_name_that_resolves_to_a_private_address_is_refused(monkeypatch):
    def fake(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(egress.EgressRefused) as refused:
        egress.check_url("https://models.example.com/v1")
    assert "10.0.0.7" in refused.value.message
    egress.check_url("https://models.example.com/v1", resolve=False)  # syntax alone is fine


def test_an_unresolvable_name_is_refused_when_resolving(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror("no such name")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(egress.EgressRefused, match="could not be resolved"):
        egress.check_url("https://nowhere.example/v1")


def test_the_private_allowance_never_covers_metadata_or_unspecified():
    egress.check_url("http://127.0.0.1:8000/v1", allow_private=True)
    egress.check_url("http://10.0.0.1/v1", allow_private=True)
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://0.0.0.0/"):
        with pytest.raises(egress.EgressRefused):
            egress.check_url(url, allow_private=True)


def test_host_of():
    assert egress.host_of("HTTPS://API.Example.com/v1") == "api.example.com"
    assert egress.host_of("http://127.0.0.1:8080/v1") == "127.0.0.1:8080"


def _post(opener, url, headers=None):
    request = urllib.request.Request(url, data=b"{}", headers=headers or {}, method="POST")
    with opener.open(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_an_allowed_private_server_is_reached(server):
    opener = egress.build_opener(base_url=f"{server.url}/v1", allow_private=True)
    assert _post(opener, f"{server.url}/v1/chat/completions") == (200, {"ok": True})
    assert len(server.heard) == 1


def test_a_private_server_is_refused_at_connect_time(server, monkeypatch):
    """The name looked public when the endpoint was saved; at connect time it resolves to the
    loopback: the connection is refused and the server hears nothing."""
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "models.example.com":
            return real("127.0.0.1", server.port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    opener = egress.build_opener(base_url=f"http://models.example.com:{server.port}/v1")
    with pytest.raises(egress.EgressRefused):
        _post(opener, f"http://models.example.com:{server.port}/v1/chat/completions")
    assert server.heard == []


def test_a_redirect_to_another_host_is_not_followed(server):
    elsewhere = Server()
    try:

        def redirect(handler):
            return 307, {"Location": f"{elsewhere.url}/stolen"}, b""

        origin = Server(redirect)
        try:
            opener = egress.build_opener(base_url=f"{origin.url}/v1", allow_private=True)
            with pytest.raises(egress.EgressRefused, match="redirect"):
                _post(opener, f"{origin.url}/v1/x", {"Authorization": "Bearer secret"})
            assert len(origin.heard) == 1
            assert elsewhere.heard == []
        finally:
            origin.close()
    finally:
        elsewhere.close()


def test_a_redirect_on_the_same_host_is_followed():
    def answer(handler):
        if handler.path == "/v1/old":
            return 307, {"Location": "/v1/new"}, b""
        return 200, {}, b'{"ok": true}'

    origin = Server(answer)
    try:
        opener = egress.build_opener(base_url=f"{origin.url}/v1", allow_private=True)
        with opener.open(f"{origin.url}/v1/old", timeout=5) as response:  # urllib follows GETs
            assert response.status == 200
        assert [path for _, path, _ in origin.heard] == ["/v1/old", "/v1/new"]
    finally:
        origin.close()


def test_a_request_for_another_host_is_refused(server):
    opener = egress.build_opener(base_url="http://127.0.0.2:9/v1", allow_private=True)
    with pytest.raises(egress.EgressRefused, match="own host"):
        _post(opener, f"{server.url}/v1/x")
    assert server.heard == []


def test_proxy_variables_from_the_environment_are_ignored(server, monkeypatch):
    trap = Server()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, trap.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        opener = egress.build_opener(base_url=f"{server.url}/v1", allow_private=True)
        assert _post(opener, f"{server.url}/v1/x")[0] == 200
        assert trap.heard == []
        assert len(server.heard) == 1
    finally:
        trap.close()


def test_an_explicit_proxy_is_used(server):
    proxy = Server()
    try:
        opener = egress.build_opener(base_url="http://models.internal/v1", proxy=proxy.url)
        assert _post(opener, "http://models.internal/v1/x")[0] == 200
        assert proxy.heard and proxy.heard[0][1] == "http://models.internal/v1/x"
        assert server.heard == []
    finally:
        proxy.close()
