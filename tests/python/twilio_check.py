"""Checks DoCare's Twilio plumbing with the official `twilio` library and PyJWT.

    twilio_check.py sign URL AUTH_TOKEN          < form body -> prints X-Twilio-Signature
    twilio_check.py validate URL AUTH_TOKEN SIG  < form body -> exit 0 when RequestValidator accepts
    twilio_check.py token ACCOUNT_SID KEY_SID KEY_SECRET IDENTITY ROOM < access token
        -> exit 0 when the token is a Twilio video access token: PyJWT verifies it with the
           API key secret (HS256), its header is twilio's own (typ JWT, cty twilio-fpa;v=1),
           iss/sub/jti are the key SID, the account SID and "<key sid>-<iat>", its grants
           are exactly those twilio's AccessToken + VideoGrant make for the same identity
           and room, and it lives 1 hour (never more than 24).
"""
import sys
from urllib.parse import parse_qsl

import jwt
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VideoGrant
from twilio.request_validator import RequestValidator


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


mode = sys.argv[1]
stdin = sys.stdin.buffer.read().decode("utf-8")
if mode == "sign":
    url, token = sys.argv[2], sys.argv[3]
    print(RequestValidator(token).compute_signature(url, dict(parse_qsl(stdin, keep_blank_values=True))))
elif mode == "validate":
    url, token, signature = sys.argv[2], sys.argv[3], sys.argv[4]
    if not RequestValidator(token).validate(url, dict(parse_qsl(stdin, keep_blank_values=True)), signature):
        fail("RequestValidator refused the signature")
elif mode == "token":
    account_sid, key_sid, key_secret, identity, room = sys.argv[2:7]
    token = stdin.strip()
    header = jwt.get_unverified_header(token)
    # The signature is verified; the times are the test's manual clock's, checked below.
    claims = jwt.decode(
        token,
        key_secret,
        algorithms=["HS256"],
        options={"require": ["exp", "iss", "sub", "jti"], "verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    reference = AccessToken(account_sid, key_sid, key_secret, identity=identity, ttl=3600)
    reference.add_grant(VideoGrant(room=room))
    ref_token = reference.to_jwt()
    ref_header = jwt.get_unverified_header(ref_token)
    ref_claims = jwt.decode(ref_token, key_secret, algorithms=["HS256"])
    for name in ("alg", "typ", "cty"):
        if header.get(name) != ref_header.get(name):
            fail(f"header {name}: {header.get(name)!r}, twilio makes {ref_header.get(name)!r}")
    if header.get("cty") != "twilio-fpa;v=1":
        fail(f"cty {header.get('cty')!r}")
    if claims["iss"] != key_sid or claims["sub"] != account_sid:
        fail(f"iss/sub {claims['iss']!r} {claims['sub']!r}")
    if claims["grants"] != ref_claims["grants"]:
        fail(f"grants {claims['grants']!r}, twilio makes {ref_claims['grants']!r}")
    issued = int(claims["jti"].rsplit("-", 1)[1])
    if not claims["jti"].startswith(key_sid + "-"):
        fail(f"jti {claims['jti']!r}")
    ttl = claims["exp"] - issued
    if ttl != 3600 or ttl > 24 * 3600:
        fail(f"lifetime {ttl} s")
    print("ok")
else:
    sys.exit(f"unknown mode {mode}")
