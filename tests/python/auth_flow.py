"""The identity flow as a client that knows only the README would run it, against a
running local stack, with libraries no one on this project wrote: pyotp for TOTP codes
and PyJWT for verifying access tokens from the JWKS alone.

usage: auth_flow.py BASE_URL OUTBOX_DIR
Exits non-zero (with the failed assertion) when any step misbehaves.
"""

import base64
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.parse
import urllib.request
import uuid

import jwt
import pyotp

BASE, OUTBOX = sys.argv[1], sys.argv[2]
HOST = urllib.parse.urlparse(BASE)


def call(method, path, body=None, token=None, ip="127.0.0.1"):
    """One request from a chosen loopback address (the stack sees it as the source IP)."""
    conn = http.client.HTTPConnection(HOST.hostname, HOST.port, timeout=30, source_address=(ip, 0))
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    return response.status, (json.loads(raw) if raw else None)


def mail_to(address, subject_part, seen=()):
    """Waits for a new outbox mail to the address whose subject contains the text."""
    deadline = time.time() + 10
    while time.time() < deadline:
        for name in sorted(os.listdir(OUTBOX)):
            if name in seen:
                continue
            with open(os.path.join(OUTBOX, name)) as f:
                mail = json.load(f)
            if mail["to"] == address and subject_part in (mail.get("subject") or ""):
                return name, mail
        time.sleep(0.1)
    raise AssertionError(f"no mail '{subject_part}' to {address}")


def token_in(body):
    return next(w for w in body.split() if len(w) == 43)


def verify_with_jwks(access_token):
    """PyJWT, with nothing but the published JWKS."""
    client = jwt.PyJWKClient(BASE + "/.well-known/jwks.json")
    key = client.get_signing_key_from_jwt(access_token)
    header = jwt.get_unverified_header(access_token)
    assert header["alg"] == "ES256" and header["typ"] == "at+jwt" and header["kid"], header
    claims = jwt.decode(
        access_token,
        key.key,
        algorithms=["ES256"],
        audience="docare-api",
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    # The kid is the key's RFC 7638 thumbprint, computed here independently.
    jwk = next(k for k in json.loads(urllib.request.urlopen(BASE + "/.well-known/jwks.json").read())["keys"] if k["kid"] == header["kid"])
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]}, separators=(",", ":"), sort_keys=True)
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert header["kid"] == thumbprint, (header["kid"], thumbprint)
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}, jwk  # no private part
    assert claims["iss"].startswith("docare:"), claims
    assert claims["exp"] - claims["iat"] == 900, claims
    for claim in ("role", "sid", "amr", "jti"):
        assert claim in claims, claim
    return claims


def signed_up(email, password, ip):
    status, body = call("POST", "/api/v1/auth/signup", {"email": email, "password": password, "full_name": "Pat Python"}, ip=ip)
    assert status == 201, (status, body)
    _, mail = mail_to(email, "Confirm")
    status, _ = call("POST", "/api/v1/auth/verify-email", {"token": token_in(mail["body"])}, ip=ip)
    assert status == 204, status


def main():
    email = f"py-{uuid.uuid4().hex[:8]}@example.com"
    password = "a long python password"
    ip = "127.0.0.2"

    # Sign up, confirm from the outbox, log in.
    signed_up(email, password, ip)
    status, pair = call("POST", "/api/v1/auth/login", {"email": email, "password": password}, ip=ip)
    assert status == 200, (status, pair)
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 900
    claims = verify_with_jwks(pair["access_token"])
    assert claims["role"] == "patient" and claims["amr"] == ["pwd"], claims

    # Enrol TOTP with pyotp.
    status, enrol = call("POST", "/api/v1/auth/mfa/totp/enroll", {"password": password}, token=pair["access_token"], ip=ip)
    assert status == 200, (status, enrol)
    parsed = pyotp.parse_uri(enrol["otpauth_uri"])
    assert parsed.secret == enrol["secret"] and parsed.digits == 6 and parsed.interval == 30
    totp = pyotp.TOTP(enrol["secret"])
    status, confirmed = call("POST", "/api/v1/auth/mfa/totp/confirm", {"code": totp.now()}, token=pair["access_token"], ip=ip)
    assert status == 200, (status, confirmed)
    recovery = confirmed["recovery_codes"]
    assert len(recovery) == 10 and len(set(recovery)) == 10

    # Log in again: password, then a code from the next time step (this step's code was used).
    status, step1 = call("POST", "/api/v1/auth/login", {"email": email, "password": password}, ip=ip)
    assert status == 200 and step1["mfa_required"] is True and "access_token" not in step1, step1
    next_code = totp.at(time.time() + 30)
    status, pair = call("POST", "/api/v1/auth/mfa/challenge", {"mfa_token": step1["mfa_token"], "code": next_code}, ip=ip)
    assert status == 200, (status, pair)
    claims = verify_with_jwks(pair["access_token"])
    assert "mfa" in claims["amr"], claims

    # Refresh rotates; the old refresh token presented again kills the whole family.
    status, rotated = call("POST", "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}, ip=ip)
    assert status == 200 and rotated["refresh_token"] != pair["refresh_token"], (status, rotated)
    verify_with_jwks(rotated["access_token"])
    status, _ = call("POST", "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}, ip=ip)
    assert status == 401, status
    status, _ = call("POST", "/api/v1/auth/refresh", {"refresh_token": rotated["refresh_token"]}, ip=ip)
    assert status == 401, f"family not revoked: {status}"

    # A recovery code logs in once; logout ends that session.
    status, step1 = call("POST", "/api/v1/auth/login", {"email": email, "password": password}, ip=ip)
    status, pair = call("POST", "/api/v1/auth/mfa/challenge", {"mfa_token": step1["mfa_token"], "code": recovery[0]}, ip=ip)
    assert status == 200, (status, pair)
    status, _ = call("POST", "/api/v1/auth/logout", token=pair["access_token"], ip=ip)
    assert status == 204, status
    status, _ = call("POST", "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}, ip=ip)
    assert status == 401, status

    # The sixth bad password: five failures lock the account (each from its own address,
    # so the per-IP limit is not what stops them); then even the right password fails.
    victim = f"lock-{uuid.uuid4().hex[:8]}@example.com"
    signed_up(victim, password, "127.0.0.3")
    for n in range(5):
        status, body = call("POST", "/api/v1/auth/login", {"email": victim, "password": "wrong password"}, ip=f"127.0.1.{n + 1}")
        assert status == 401 and body["error"]["code"] == "invalid_credentials", (status, body)
    status, body = call("POST", "/api/v1/auth/login", {"email": victim, "password": password}, ip="127.0.2.1")
    assert status in (401, 429) and "access_token" not in (body or {}), (status, body)
    mail_to(victim, "locked")

    # Unknown e-mail and wrong password look the same.
    status_unknown, unknown = call("POST", "/api/v1/auth/login", {"email": "nobody-" + email, "password": "x" * 10}, ip="127.0.3.1")
    status_wrong, wrong = call("POST", "/api/v1/auth/login", {"email": email, "password": "x" * 10}, ip="127.0.3.2")
    assert status_unknown == status_wrong == 401
    assert unknown["error"]["message"] == wrong["error"]["message"]
    print("auth flow: ok")


if __name__ == "__main__":
    main()
