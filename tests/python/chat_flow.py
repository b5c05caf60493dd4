"""Two people chat over the local stack's WebSocket API with the `websockets` client
(written by no one here), a third connected user receives nothing, and a client that
drops off catches up through `GET /api/v1/sync` with every missed message exactly once.

Usage: chat_flow.py <ws_url> <http_url> <conversation_id> <patient_id> <provider_id>
       <patient_token> <provider_token> <stranger_token>

Exits non-zero with a message on the first broken expectation.
"""

import asyncio
import json
import sys
import urllib.error
import urllib.request

from websockets.asyncio.client import connect

WS, HTTP, CONV, PATIENT, PROVIDER, PT, DT, ST = sys.argv[1:9]


def rest(method, path, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(HTTP + path, data=data, method=method)
    req.add_header("authorization", "Bearer " + token)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)


async def open_ws(token):
    return await connect(WS, additional_headers={"Authorization": "Bearer " + token})


async def frame(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def expect(ws, kind, what):
    got = await frame(ws)
    check(got["type"] == kind, f"{what}: wanted {kind}, got {got}")
    return got


async def quiet(ws, what, secs=0.5):
    try:
        got = await asyncio.wait_for(ws.recv(), secs)
    except asyncio.TimeoutError:
        return
    raise SystemExit(f"FAILED: {what}: unexpected frame {got}")


async def send(ws, **frame_fields):
    await ws.send(json.dumps(frame_fields))


async def main():
    patient = await open_ws(PT)
    provider = await open_ws(DT)
    stranger = await open_ws(ST)

    # Presence: the provider comes online; the patient (sharing a conversation) is told,
    # and the provider learns the patient is offline (never seen).
    await send(provider, action="presence:update", state="online")
    seen = await expect(patient, "presence", "the patient sees the provider's presence")
    check(seen["data"]["user_id"] == PROVIDER and seen["data"]["state"] == "online", str(seen))
    back = await expect(provider, "presence", "the provider gets the patient's presence")
    check(back["data"] == {"user_id": PATIENT, "state": "offline", "last_seen": None}, str(back))
    await send(patient, action="presence:update", state="away")
    seen = await expect(provider, "presence", "the provider sees the patient away")
    check(seen["data"]["state"] == "away", str(seen))
    back = await expect(patient, "presence", "the patient gets the provider's presence")
    check(back["data"]["state"] == "online", str(back))

    # Typing reaches the other participant, never the sender or the stranger.
    await send(patient, action="typing:start", conversation_id=CONV)
    typing = await expect(provider, "typing", "typing reaches the provider")
    check(typing["data"]["state"] == "start" and typing["data"]["user_id"] == PATIENT, str(typing))
    check(typing["data"]["expires_in_secs"] > 0, "typing lapses by itself")
    await send(patient, action="typing:stop", conversation_id=CONV)
    typing = await expect(provider, "typing", "typing stop reaches the provider")
    check(typing["data"]["state"] == "stop", str(typing))

    # A message: delivered to the sender, received by the other participant.
    await send(patient, action="message:send", conversation_id=CONV,
               client_message_id="py-1", body="Hello Dr, my knee hurts")
    delivered = await expect(patient, "message:delivered", "the sender's acknowledgement")
    check(delivered["data"]["client_message_id"] == "py-1", str(delivered))
    check(delivered["data"]["seq"] == 1, str(delivered))
    received = await expect(provider, "message:received", "the provider receives it")
    check(received["data"]["body"] == "Hello Dr, my knee hurts", str(received))
    check(received["data"]["id"] == delivered["data"]["message_id"], "the same message")
    # A resend is acknowledged with the same message and not pushed again.
    await send(patient, action="message:send", conversation_id=CONV,
               client_message_id="py-1", body="Hello Dr, my knee hurts")
    again = await expect(patient, "message:delivered", "the resend's acknowledgement")
    check(again["data"]["message_id"] == delivered["data"]["message_id"], "no duplicate")
    await quiet(provider, "a resend is not pushed twice")

    # A read receipt from the provider reaches the patient.
    await send(provider, action="message:read", conversation_id=CONV, up_to=1)
    ack = await expect(provider, "message:read", "the receipt's acknowledgement")
    check(ack["data"]["up_to"] == 1, str(ack))
    receipt = await expect(patient, "message:read", "the receipt reaches the patient")
    check(receipt["data"] == {"conversation_id": CONV, "user_id": PROVIDER, "up_to": 1}, str(receipt))

    # Malformed and refused frames answer an error frame; the connection stays up.
    await send(patient, action="message:send", conversation_id=CONV, client_message_id="bad id", body="x")
    err = await expect(patient, "error", "a bad client id")
    check(err["data"]["status"] == 400, str(err))
    await send(stranger, action="message:send", conversation_id=CONV, client_message_id="s-1", body="hi")
    err = await expect(stranger, "error", "a stranger's send")
    check(err["data"]["status"] == 404, str(err))
    await send(stranger, action="typing:start", conversation_id=CONV)
    err = await expect(stranger, "error", "a stranger's typing")
    check(err["data"]["status"] == 404, str(err))
    await send(patient, action="ping")
    await expect(patient, "pong", "still connected")

    # The provider drops off, keeping its sync token; three messages are missed.
    status, token = rest("GET", "/api/v1/sync", DT)
    check(status == 200, f"sync token: {status} {token}")
    since = token["next_token"]
    await provider.close()
    missed = []
    for i in range(3):
        await send(patient, action="message:send", conversation_id=CONV,
                   client_message_id=f"py-missed-{i}", body=f"Missed {i}")
        missed.append((await expect(patient, "message:delivered", "missed send"))["data"]["message_id"])
    # Back: sync gives each missed message exactly once, in order, then nothing.
    provider = await open_ws(DT)
    status, page = rest("GET", "/api/v1/sync?since=" + since, DT)
    check(status == 200, f"sync: {status} {page}")
    got = [i["message"]["id"] for i in page["items"] if i["type"] == "message"]
    check(got == missed, f"each missed message once, in order: {got} vs {missed}")
    seqs = [i["seq"] for i in page["items"]]
    check(seqs == sorted(set(seqs)), f"ordered, no repeats: {seqs}")
    check(not page["has_more"], "nothing more")
    status, rest_page = rest("GET", "/api/v1/sync?since=" + page["next_token"], DT)
    check(status == 200 and rest_page["items"] == [], f"caught up: {rest_page}")
    # And live again.
    await send(patient, action="message:send", conversation_id=CONV, client_message_id="py-back", body="Back?")
    await expect(patient, "message:delivered", "after the reconnect")
    received = await expect(provider, "message:received", "live after the reconnect")
    check(received["data"]["body"] == "Back?", str(received))

    # The stranger received nothing of it and reads nothing.
    await quiet(stranger, "the stranger receives nothing")
    status, _ = rest("GET", f"/api/v1/conversations/{CONV}/messages", ST)
    check(status == 404, f"the stranger reads nothing: {status}")
    status, page = rest("GET", "/api/v1/sync?since=0", ST)
    check(status == 200 and page["items"] == [], f"the stranger's stream is empty: {page}")

    for ws in (patient, provider, stranger):
        await ws.close()
    print("ok")


asyncio.run(main())
