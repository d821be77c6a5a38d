"""A proxy on the way that refuses its credentials (``407 Proxy Authentication Required``): a
:class:`ProxyAuthenticationError` with status 407, whether the proxy answers the request itself
(plain HTTP) or refuses the tunnel an ``https://`` call asks for (``CONNECT``). Against a
server of the tests' own playing the proxy."""

from __future__ import annotations

import time

import pytest

from flask_intercom_events import IntercomAPIError, ProxyAuthenticationError
from flask_intercom_events.client import IntercomClient
from flask_intercom_events.events import Event, Identity
from flask_intercom_events.retry import Verdict, classify_error, reason_of

from .hostile import HostileServer, Peer, Received, response

TOKEN = "tok-proxy-0a1b2c3d4e5f"
NOW = int(time.time())


def event() -> Event:
    return Event("invited-friend", NOW, Identity(user_id="42"), {})


def refusing(peer: Peer, request: Received) -> bool:
    peer.send(
        response(
            407,
            b"<html>Cache Access Denied</html>",
            reason="Proxy Authentication Required",
            headers={"Proxy-Authenticate": 'Basic realm="corp"'},
            content_type="text/html",
        )
    )
    return True


def says_it_is_the_proxy(error: IntercomAPIError) -> None:
    assert type(error) is ProxyAuthenticationError
    assert error.status == 407
    assert "proxy" in error.message
    assert "HTTPS_PROXY" in error.message
    assert TOKEN not in str(error)
    # Every event would fail the same way: delivery pauses, as for a refused token.
    assert classify_error(error) is Verdict.UNAUTHORIZED
    assert reason_of(error) == "407 proxy_authentication_required"


def https_call_through(
    monkeypatch: pytest.MonkeyPatch, proxy_url: str
) -> pytest.ExceptionInfo[IntercomAPIError]:
    """Send an event to ``https://api.intercom.io`` through the proxy at ``proxy_url``: the
    error it raised."""
    monkeypatch.setenv("HTTPS_PROXY", proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = IntercomClient(TOKEN, base_url="https://api.intercom.io", timeout=(2, 5))
    with pytest.raises(IntercomAPIError) as caught:
        client.create_event(event())
    client.close()
    return caught


def test_a_proxy_answering_407_itself() -> None:
    # A proxy forwarding plain HTTP (or one in front of the base URL) answers the request.
    with HostileServer(refusing) as proxy:
        client = IntercomClient(TOKEN, base_url=proxy.url, timeout=(2, 5))
        with pytest.raises(IntercomAPIError) as caught:
            client.create_event(event())
        client.close()
    says_it_is_the_proxy(caught.value)
    assert "Cache Access Denied" in caught.value.message


def test_a_proxy_refusing_the_tunnel_of_an_https_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # HTTPS through a proxy: it answers 407 to the CONNECT, which requests reports as a
    # ProxyError with no status; nothing reaches Intercom.
    with HostileServer(refusing) as proxy:
        caught = https_call_through(monkeypatch, proxy.url.replace("http://", "http://user:wrong@"))
    [connect] = proxy.received
    assert (connect.method, connect.target) == ("CONNECT", "api.intercom.io:443")
    assert "authorization" not in connect.headers  # the token is never the proxy's
    says_it_is_the_proxy(caught.value)
    assert "wrong" not in str(caught.value)  # nor is the proxy's password shown


def test_a_tunnel_refused_otherwise_is_a_network_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(peer: Peer, request: Received) -> bool:
        peer.send(response(502, b"", reason="Bad Gateway"))
        return True

    with HostileServer(failing) as proxy:
        caught = https_call_through(monkeypatch, proxy.url)
    assert caught.value.status is None
    assert classify_error(caught.value) is Verdict.TRANSIENT
