"""The WebSocket transport as a third-party client sees it (the `websockets` library),
against a running local stack: tickets, origins, API Gateway's size limits, error frames.

usage: websocket_transport.py limits HTTP_BASE WS_URL ACCESS_TOKEN
       websocket_transport.py idle WS_URL ACCESS_TOKEN IDLE_SECS MAX_AGE_SECS
Exits non-zero (with the failed assertion) when any step misbehaves.
"""

import json
import sys
import time
import urllib.request

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

ALLOWED = "http://localhost:5173"


def ticket(base, token):
    request = urllib.request.Request(
        base + "/api/v1/realtime/ticket",
        method="POST",
        headers={"authorization": "Bearer " + token},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201, response.status
        body = json.load(response)
    assert set(body) == {"ticket", "expires_at"}, body
    return body["ticket"]


def refused(url, **kwargs):
    """The HTTP status a refused handshake answers."""
    kwargs.setdefault("open_timeout", 10)
    try:
        with connect(url, **kwargs):
            pass
    except InvalidStatus as err:
        return err.response.status_code
    raise AssertionError(f"{url} was accepted")


def ping(ws):
    ws.send(json.dumps({"action": "ping"}))
    answer = json.loads(ws.recv(timeout=10))
    assert answer["type"] == "pong", answer


def closed_with(ws, code):
    try:
        while True:
            ws.recv(timeout=10)
    except ConnectionClosed as err:
        assert err.rcvd is not None and err.rcvd.code == code, (err.rcvd, code)
        return err.rcvd.reason


def limits(base, ws_url, token):
    # A browser: ticket in the URL, allowed Origin.
    t = ticket(base, token)
    with connect(f"{ws_url}/?ticket={t}", origin=ALLOWED, open_timeout=10) as ws:
        ping(ws)
    assert refused(f"{ws_url}/?ticket={t}", origin=ALLOWED) == 401, "replayed"
    assert refused(f"{ws_url}/?ticket=nonsense", origin=ALLOWED) == 401
    assert refused(ws_url) == 401, "no credential"
    # A disallowed Origin is refused before the ticket is spent.
    t = ticket(base, token)
    assert refused(f"{ws_url}/?ticket={t}", origin="https://evil.example") == 403
    with connect(f"{ws_url}/?ticket={t}", origin=ALLOWED, open_timeout=10) as ws:
        ping(ws)
    # A native client: the Authorization header, no Origin.
    native = {"additional_headers": {"Authorization": "Bearer " + token}, "open_timeout": 10}
    assert refused(ws_url, origin="https://evil.example", **native) == 403

    with connect(ws_url, max_size=None, **native) as ws:
        # Malformed and unknown frames get an error frame; the connection stays up.
        for frame, code in [
            ("not json", "malformed"),
            ("[1, 2]", "malformed"),
            (json.dumps({"action": "dance"}), "unknown_action"),
            (json.dumps({"no": "action"}), "unknown_action"),
        ]:
            ws.send(frame)
            answer = json.loads(ws.recv(timeout=10))
            assert answer["type"] == "error" and answer["data"]["code"] == code, (frame, answer)
        ping(ws)
        # 120 KiB in four 30 KiB frames is one message within the limits.
        message = json.dumps({"action": "ping", "pad": "x" * (120 * 1024 - 40)})
        assert len(message) <= 128 * 1024
        step = 30 * 1024
        ws.send(message[i : i + step] for i in range(0, len(message), step))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"

    # One frame over 32 KiB closes the connection with 1009, as API Gateway does.
    with connect(ws_url, max_size=None, **native) as ws:
        ws.send(json.dumps({"action": "ping", "pad": "x" * (33 * 1024)}))
        closed_with(ws, 1009)
    # A message over 128 KiB, even in small frames, too.
    with connect(ws_url, max_size=None, **native) as ws:
        message = json.dumps({"action": "ping", "pad": "x" * (129 * 1024)})
        step = 30 * 1024
        ws.send(message[i : i + step] for i in range(0, len(message), step))
        closed_with(ws, 1009)
    print("limits ok")


def idle(ws_url, token, idle_secs, max_age_secs):
    native = {"additional_headers": {"Authorization": "Bearer " + token}, "open_timeout": 10}
    # Silent: closed after the idle timeout with 1001.
    started = time.monotonic()
    with connect(ws_url, **native) as ws:
        reason = closed_with(ws, 1001)
    waited = time.monotonic() - started
    assert reason == "idle timeout", reason
    assert idle_secs * 0.9 <= waited < max_age_secs, waited
    # Pinging: kept past the idle timeout, closed at the connection lifetime with 1001.
    started = time.monotonic()
    with connect(ws_url, **native) as ws:
        try:
            while True:
                ping(ws)
                time.sleep(idle_secs / 4)
        except ConnectionClosed as err:
            assert err.rcvd is not None and err.rcvd.code == 1001, err.rcvd
            assert err.rcvd.reason == "connection lifetime exceeded", err.rcvd.reason
    lived = time.monotonic() - started
    assert max_age_secs * 0.9 <= lived < max_age_secs + 5, lived
    print("idle ok")


if __name__ == "__main__":
    if sys.argv[1] == "limits":
        limits(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "idle":
        idle(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    else:
        raise SystemExit(__doc__)
