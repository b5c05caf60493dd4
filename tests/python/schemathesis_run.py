"""Schemathesis against a running local stack, driven by its own /api/v1/openapi.json.

usage: schemathesis_run.py BASE_URL DATA_DIR [MAX_EXAMPLES [public]]

Every operation of the document is tested except those that end sessions or change
credentials (EXCLUDED). Each gets one explicit, valid case (known ids, real tokens,
a fresh sign-up) and MAX_EXAMPLES generated ones. Checks on every answer:
not_a_server_error, response_schema_conformance, status_code_conformance (the status
is one the route documents), content_type_conformance.

Budgets: an authenticated request counts against the account's general limit (100 per
15 minutes), so the authenticated operations are spread over the three seeded demo
accounts (admin operations on the admin, the others alternately on the patient and the
provider) and MAX_EXAMPLES defaults to 8: at most 9 requests per operation. The stack
runs with --dev-limits, so per-IP budgets (sign-up, login) are not the bottleneck.
The per-account failure budget of TOTP enrolment and confirmation and of a phone change
in the profile (5 wrong passwords or codes per 15 minutes) is not raised by
--dev-limits: the fuzzed wrong passwords spend it and the route then answers 429, which
its document lists (a correct answer); each of these operations runs as a fresh patient
of its own.

Exits non-zero on any failed check, or when an operation never answered a 2xx.
"""

import glob
import json
import re
import sys
import time
import uuid
from collections import defaultdict

import pyotp
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]

# Routes that end sessions or change credentials: they would cut the run's own sessions.
EXCLUDED = {
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
    ("POST", "/api/v1/auth/password/change"),
    ("POST", "/api/v1/auth/password/reset"),
    ("POST", "/api/v1/auth/mfa/totp/disable"),
    ("POST", "/api/v1/users/{id}/disable"),
    ("PUT", "/api/v1/users/{id}/role"),
    # A refund needs a payment that Stripe confirmed, which only the client's Stripe.js
    # (or, locally, the fake's in-process confirm) does; tests/flows/payments.rs and the
    # e2e refund tests cover it.
    ("POST", "/api/v1/payments/{id}/refunds"),
    # Video: a token, a start and an end need an appointment within its join window (15
    # minutes before its start until its end), which the run's free slots cannot promise;
    # Twilio's callbacks are form-encoded and signed with the account's auth token.
    # tests/flows/video.rs (the `twilio` library's RequestValidator and AccessToken) and
    # tests/e2e/video.rs (over HTTP) cover them.
    ("POST", "/api/v1/video-calls/tokens"),
    ("POST", "/api/v1/video-calls/{id}/start"),
    ("POST", "/api/v1/video-calls/{id}/end"),
    ("POST", "/api/v1/webhooks/twilio/video"),
}

# Run last: confirming TOTP turns enrolment off for the account (enrol first).
LAST = [("POST", "/api/v1/auth/mfa/totp/confirm")]


def checks_bite(base, document):
    """The checks fail on a real answer that a broken copy of the document does not
    describe: guards against a schemathesis upgrade turning them into no-ops."""
    broken = json.loads(json.dumps(document))
    broken["components"]["schemas"]["HealthReport"]["required"].append("not_in_the_answer")
    for result in schemathesis.openapi.from_dict(broken).get_all_operations():
        op = result.ok()
        if op.path == "/health":
            case = op.Case()
            response = case.call(base_url=base)
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup):
                return
            raise AssertionError("the schema checks accepted an answer the schema rejects")
    raise AssertionError("no GET /health operation in the document")


def main():
    base, data_dir = sys.argv[1].rstrip("/"), sys.argv[2]
    max_examples = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    # `public`: only the public operations (no per-account budget: for long runs).
    only_public = len(sys.argv) > 4 and sys.argv[4] == "public"
    http = requests.Session()

    def post(path, body, token=None):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return http.post(base + path, json=body, headers=headers, timeout=30)

    seeded = json.load(open(f"{data_dir}/seed-accounts.json"))["accounts"]
    by_role = {a["role"]: a for a in seeded}

    last_step = {}

    def totp_now(account):
        # A TOTP code is accepted once per 30 s step: wait for a fresh step if needed.
        totp = pyotp.TOTP(account["totp_secret"])
        step = int(time.time()) // 30
        if last_step.get(account["id"]) == step:
            time.sleep(30 - time.time() % 30 + 0.5)
            step = int(time.time()) // 30
        last_step[account["id"]] = step
        return totp.now()

    def mfa_token(account):
        r = post("/api/v1/auth/login", {"email": account["email"], "password": account["password"]})
        assert r.status_code == 200 and r.json().get("mfa_required"), r.text
        return r.json()["mfa_token"]

    def login(account):
        if account.get("totp_secret"):
            token = mfa_token(account)
            r = post("/api/v1/auth/mfa/challenge", {"mfa_token": token, "code": totp_now(account)})
        else:
            r = post("/api/v1/auth/login", {"email": account["email"], "password": account["password"]})
        assert r.status_code == 200, r.text
        return r.json()

    sessions = {role: login(acc) for role, acc in by_role.items()}
    token = {role: s["access_token"] for role, s in sessions.items()}
    patient_id = by_role["patient"]["id"]

    def outbox_token(email, marker):
        deadline = time.time() + 15
        while time.time() < deadline:
            for path in sorted(glob.glob(f"{data_dir}/outbox/*.json")):
                message = json.load(open(path))
                if message.get("to") == email and marker in message.get("body", ""):
                    found = re.search(marker + r"\s*(\S+)", message["body"])
                    if found:
                        return found.group(1)
            time.sleep(0.3)
        raise AssertionError(f"no mail to {email} with {marker!r}")

    # Explicit valid cases, built lazily (each may spend requests or a TOTP step).
    def signup_body():
        return {"email": f"st-{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse battery", "full_name": "Schema Thesis"}

    def verify_body():
        body = signup_body()
        assert post("/api/v1/auth/signup", body).status_code == 201
        return {"token": outbox_token(body["email"], "Your verification token:")}

    def contact(role):
        r = post("/api/v1/emergency/contacts", {"name": "Sam Doe", "relationship": "sibling", "phone": "+15555550100"}, token[role])
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def care_relationship_id():
        r = http.get(base + "/api/v1/care-relationships", headers={"authorization": f"Bearer {token['patient']}"}, timeout=30)
        return r.json()["items"][0]["id"]

    provider_id = by_role["provider"]["id"]

    # Medications: hourly doses from two days ago, so every whole hour is a dose in any
    # time zone the fuzzed profile may have set.
    hour = int(time.time()) // 3600 * 3600
    first_dose = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(hour - 48 * 3600))
    starts_on = time.strftime("%Y-%m-%d", time.gmtime(hour - 72 * 3600))
    last_dose = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(hour - 3600))

    # The medications routes run as a patient of their own (a fresh sign-up), so their
    # requests do not spend the seeded patient's general budget.
    med_signup = signup_body()
    assert post("/api/v1/auth/signup", med_signup).status_code == 201
    assert post("/api/v1/auth/verify-email", {"token": outbox_token(med_signup["email"], "Your verification token:")}).status_code == 204
    token["medpatient"] = post("/api/v1/auth/login", {"email": med_signup["email"], "password": med_signup["password"]}).json()["access_token"]
    med_patient_id = http.get(base + "/api/v1/users/me", headers={"authorization": f"Bearer {token['medpatient']}"}, timeout=30).json()["id"]

    def medication_body():
        return {"patient_id": med_patient_id, "name": "Ibuprofen", "dosage": "200 mg", "form": "tablet",
                "route": "oral", "schedule": {"kind": "every_hours", "hours": 1, "first_dose": first_dose},
                "starts_on": starts_on}

    def medication():
        r = post("/api/v1/medications", medication_body(), token["medpatient"])
        assert r.status_code == 201, f"medication: {r.status_code} {r.text}"
        return r.json()["id"]

    # Messaging runs as a patient of its own in the seeded provider's care (a fresh
    # sign-up: the care-relationship routes may end the seeded patient's relationship).
    chat_signup = signup_body()
    assert post("/api/v1/auth/signup", chat_signup).status_code == 201
    assert post("/api/v1/auth/verify-email", {"token": outbox_token(chat_signup["email"], "Your verification token:")}).status_code == 204
    token["chatpatient"] = post("/api/v1/auth/login", {"email": chat_signup["email"], "password": chat_signup["password"]}).json()["access_token"]
    chat_patient_id = http.get(base + "/api/v1/users/me", headers={"authorization": f"Bearer {token['chatpatient']}"}, timeout=30).json()["id"]
    r = post("/api/v1/care-relationships", {"provider_id": by_role["provider"]["id"], "patient_id": chat_patient_id}, token["admin"])
    assert r.status_code == 201, f"care for the chat patient: {r.status_code} {r.text}"

    def conversation(with_message=False):
        r = post("/api/v1/conversations", {"participant_ids": [by_role["provider"]["id"]]}, token["chatpatient"])
        assert r.status_code == 201, f"conversation: {r.status_code} {r.text}"
        cid = r.json()["id"]
        if with_message:
            m = post(f"/api/v1/conversations/{cid}/messages", {"client_message_id": "first", "body": "Hello"}, token["chatpatient"])
            assert m.status_code == 201, f"message: {m.status_code} {m.text}"
        return cid

    # Documents run as a patient of their own in the seeded provider's care (uploads
    # count against 20 per hour per account; sharing needs a care relationship).
    doc_signup = signup_body()
    assert post("/api/v1/auth/signup", doc_signup).status_code == 201
    assert post("/api/v1/auth/verify-email", {"token": outbox_token(doc_signup["email"], "Your verification token:")}).status_code == 204
    token["docpatient"] = post("/api/v1/auth/login", {"email": doc_signup["email"], "password": doc_signup["password"]}).json()["access_token"]
    doc_patient_id = http.get(base + "/api/v1/users/me", headers={"authorization": f"Bearer {token['docpatient']}"}, timeout=30).json()["id"]
    r = post("/api/v1/care-relationships", {"provider_id": provider_id, "patient_id": doc_patient_id}, token["admin"])
    assert r.status_code == 201, f"care for the document patient: {r.status_code} {r.text}"
    pdf = b"%PDF-1.7\n" + b"schemathesis document\n" * 200 + b"%%EOF\n"

    # Observations run as a patient of their own in the seeded provider's care (the
    # provider sets thresholds on them).
    obs_signup = signup_body()
    assert post("/api/v1/auth/signup", obs_signup).status_code == 201
    assert post("/api/v1/auth/verify-email", {"token": outbox_token(obs_signup["email"], "Your verification token:")}).status_code == 204
    token["obspatient"] = post("/api/v1/auth/login", {"email": obs_signup["email"], "password": obs_signup["password"]}).json()["access_token"]
    obs_patient_id = http.get(base + "/api/v1/users/me", headers={"authorization": f"Bearer {token['obspatient']}"}, timeout=30).json()["id"]
    r = post("/api/v1/care-relationships", {"provider_id": provider_id, "patient_id": obs_patient_id}, token["admin"])
    assert r.status_code == 201, f"care for the observations patient: {r.status_code} {r.text}"
    obs_now = int(time.time())
    obs_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(obs_now - 60))
    obs_from = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(obs_now - 86400))
    obs_to = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(obs_now + 3600))

    def document(upload=False):
        r = post("/api/v1/documents", {"name": "report.pdf", "content_type": "application/pdf", "size": len(pdf), "category": "lab_result"}, token["docpatient"])
        assert r.status_code == 201, f"document: {r.status_code} {r.text}"
        ticket = r.json()
        if upload:
            headers = {k: v for k, v in ticket["upload_headers"].items() if k != "content-length"}
            put = http.put(ticket["upload_url"], data=pdf, headers=headers, timeout=30)
            assert put.status_code == 200, f"upload: {put.status_code} {put.text}"
            deadline = time.time() + 20
            while time.time() < deadline:
                got = http.get(f"{base}/api/v1/documents/{ticket['id']}", headers={"authorization": f"Bearer {token['docpatient']}"}, timeout=30).json()
                if got.get("status") == "available":
                    break
                time.sleep(0.3)
            assert got.get("status") == "available", f"scan: {got}"
        return ticket["id"]

    admin_reason = {"x-access-reason": "schemathesis contract run"}
    explicit = {
        ("POST", "/api/v1/auth/signup"): lambda: {"body": signup_body()},
        ("POST", "/api/v1/auth/verify-email"): lambda: {"body": verify_body()},
        ("POST", "/api/v1/auth/login"): lambda: {"body": {"email": by_role["patient"]["email"], "password": by_role["patient"]["password"]}},
        ("POST", "/api/v1/auth/mfa/challenge"): lambda: {"body": {"mfa_token": mfa_token(by_role["provider"]), "code": totp_now(by_role["provider"])}},
        ("POST", "/api/v1/auth/mfa/send-code"): lambda: {"body": {"mfa_token": mfa_token(by_role["provider"])}},
        ("POST", "/api/v1/auth/refresh"): lambda: {"body": {"refresh_token": sessions["patient"]["refresh_token"]}},
        ("POST", "/api/v1/auth/password/reset-request"): lambda: {"body": {"email": by_role["patient"]["email"]}},
        ("POST", "/api/v1/auth/mfa/totp/confirm"): None,  # built after enrolment below
        ("PATCH", "/api/v1/users/me"): lambda: {"body": {"full_name": "Pat Ient"}},
        ("PUT", "/api/v1/users/me/profile"): lambda: {"body": {"full_name": "Pat Ient", "date_of_birth": "1990-01-02", "phone": "+15555550101", "current_password": password[who[("PUT", "/api/v1/users/me/profile")]]}},
        ("GET", "/api/v1/users/{id}/profile"): lambda: {"path_parameters": {"id": patient_id}, "headers": admin_reason},
        ("GET", "/api/v1/users/{id}"): lambda: {"path_parameters": {"id": patient_id}},
        ("POST", "/api/v1/users/{id}/enable"): lambda: {"path_parameters": {"id": patient_id}},
        ("POST", "/api/v1/users"): lambda: {"body": {"email": f"staff-{uuid.uuid4().hex[:8]}@example.com", "full_name": "New Provider", "role": "provider"}},
        ("POST", "/api/v1/care-relationships"): None,  # set below (needs a second patient)
        ("GET", "/api/v1/care-relationships"): lambda: {},
        ("DELETE", "/api/v1/care-relationships/{id}"): lambda: {"path_parameters": {"id": care_relationship_id()}},
        ("POST", "/api/v1/emergency/contacts"): lambda: {"body": {"name": "Alex Doe", "relationship": "friend", "email": "alex@example.com"}},
        ("GET", "/api/v1/emergency/contacts/{id}"): lambda: {"path_parameters": {"id": contact(who[("GET", "/api/v1/emergency/contacts/{id}")])}},
        ("PUT", "/api/v1/emergency/contacts/{id}"): lambda: {"path_parameters": {"id": contact(who[("PUT", "/api/v1/emergency/contacts/{id}")])}, "body": {"name": "Sam Doe", "relationship": "brother", "phone": "+15555550102"}},
        ("DELETE", "/api/v1/emergency/contacts/{id}"): lambda: {"path_parameters": {"id": contact(who[("DELETE", "/api/v1/emergency/contacts/{id}")])}},
        ("POST", "/api/v1/emergency/sos"): lambda: {"body": {"message": "help", "location": {"latitude": 52.5, "longitude": 13.4}}},
        ("GET", "/api/v1/audit"): lambda: {"query": {"actor": patient_id}},
        ("POST", "/api/v1/medications"): lambda: {"body": medication_body()},
        ("GET", "/api/v1/medications"): lambda: {"query": {"patient_id": med_patient_id}},
        ("GET", "/api/v1/medications/{id}"): lambda: {"path_parameters": {"id": medication()}},
        ("PATCH", "/api/v1/medications/{id}"): lambda: {"path_parameters": {"id": medication()}, "body": {"dosage": "400 mg"}},
        ("POST", "/api/v1/medications/{id}/discontinue"): lambda: {"path_parameters": {"id": medication()}},
        ("POST", "/api/v1/medications/{id}/doses"): lambda: {"path_parameters": {"id": medication()}, "body": {"scheduled_for": last_dose, "status": "taken"}},
        ("GET", "/api/v1/medications/{id}/adherence"): lambda: {"path_parameters": {"id": medication()}},
        ("POST", "/api/v1/conversations"): lambda: {"body": {"participant_ids": [by_role["provider"]["id"]]}},
        ("GET", "/api/v1/conversations"): lambda: {},
        ("GET", "/api/v1/conversations/{id}"): lambda: {"path_parameters": {"id": conversation()}},
        ("GET", "/api/v1/conversations/{id}/messages"): lambda: {"path_parameters": {"id": conversation(True)}},
        ("POST", "/api/v1/conversations/{id}/messages"): lambda: {"path_parameters": {"id": conversation()}, "body": {"client_message_id": uuid.uuid4().hex, "body": "How are you?"}},
        ("POST", "/api/v1/conversations/{id}/read"): lambda: {"path_parameters": {"id": conversation(True)}, "body": {"up_to": 1}},
        ("GET", "/api/v1/sync"): lambda: {"query": {"since": "0"}},
        ("POST", "/api/v1/documents"): lambda: {"body": {"name": "scan.png", "content_type": "image/png", "size": 2048, "category": "imaging"}},
        ("GET", "/api/v1/documents"): lambda: {"query": {"category": "lab_result"}},
        ("GET", "/api/v1/documents/{id}"): lambda: {"path_parameters": {"id": document()}},
        ("GET", "/api/v1/documents/{id}/content"): lambda: {"path_parameters": {"id": document(True)}, "headers": {"range": "bytes=0-99"}},
        ("POST", "/api/v1/documents/{id}/share"): lambda: {"path_parameters": {"id": document(True)}, "body": {"provider_id": provider_id}},
        ("DELETE", "/api/v1/documents/{id}"): lambda: {"path_parameters": {"id": document()}},
        ("POST", "/api/v1/observations/batch"): lambda: {"body": {"samples": [{"id": uuid.uuid4().hex, "code": "8867-4", "value": 72, "unit": "/min", "effective": obs_at, "source": "apple_health"}]}},
        ("GET", "/api/v1/observations"): lambda: {"query": {"code": "8867-4", "from": obs_from, "to": obs_to, "resolution": "1h"}},
        ("PUT", "/api/v1/observations/thresholds"): lambda: {"body": {"patient_id": obs_patient_id, "code": "40443-4", "above": 120}},
        ("POST", "/api/v1/devices/connect/{provider}"): lambda: {"path_parameters": {"provider": "google_health"}},
        ("GET", "/api/v1/devices/{provider}/callback"): lambda: {"path_parameters": {"provider": "google_health"}, "query": device_consent()},
        ("DELETE", "/api/v1/devices/{provider}"): lambda: {"path_parameters": {"provider": "google_health"}, **device_connected()},
    }

    # TOTP enrolment and confirmation need the account's password or a code, each
    # attempt reserved against the account's failure budget (5 per 15 minutes): the
    # fuzzed wrong passwords spend it and the route answers its documented 429. Each of
    # the two operations runs as a fresh patient of its own, so the confirmation's
    # enrolment is not refused because the enrolment's fuzzing spent the budget.
    password = {}

    # Device connections: the fake Google's consent page redirects to the callback with a
    # live state and code (the callback's valid case); a connection made that way is what
    # the delete removes.
    def device_consent():
        r = http.post(base + "/api/v1/devices/connect/google_health", headers={"authorization": f"Bearer {token['obspatient']}"}, timeout=30)
        assert r.status_code == 200, f"device connect: {r.status_code} {r.text}"
        consent = http.get(r.json()["authorization_url"], allow_redirects=False, timeout=30)
        assert consent.status_code == 302, f"fake consent: {consent.status_code} {consent.text}"
        query = dict(re.findall(r"[?&]([^=&]+)=([^&]*)", consent.headers["location"]))
        return {"state": requests.utils.unquote(query["state"]), "code": requests.utils.unquote(query["code"])}

    def device_connected():
        r = http.get(base + "/api/v1/devices/google_health/callback", params=device_consent(), timeout=30)
        assert r.status_code == 200, f"device callback: {r.status_code} {r.text}"
        return {}

    def enroll_body():
        return {"body": {"password": password[who[("POST", "/api/v1/auth/mfa/totp/enroll")]]}}

    explicit[("POST", "/api/v1/auth/mfa/totp/enroll")] = enroll_body

    def confirm_body():
        enrolling = who[("POST", "/api/v1/auth/mfa/totp/confirm")]
        r = post("/api/v1/auth/mfa/totp/enroll", {"password": password[enrolling]}, token[enrolling])
        secret = r.json()["secret"] if r.status_code == 200 else None
        assert secret, f"enrol: {r.status_code} {r.text}"
        return {"body": {"code": pyotp.TOTP(secret).now()}}

    explicit[("POST", "/api/v1/auth/mfa/totp/confirm")] = confirm_body

    def care_create_body():
        # The seeded provider already treats the seeded patient: a fresh verified patient.
        body = signup_body()
        assert post("/api/v1/auth/signup", body).status_code == 201
        assert post("/api/v1/auth/verify-email", {"token": outbox_token(body["email"], "Your verification token:")}).status_code == 204
        r = post("/api/v1/auth/login", {"email": body["email"], "password": body["password"]})
        me = http.get(base + "/api/v1/users/me", headers={"authorization": f"Bearer {r.json()['access_token']}"}, timeout=30).json()
        return {"body": {"provider_id": provider_id, "patient_id": me["id"]}}

    explicit[("POST", "/api/v1/care-relationships")] = care_create_body

    # Appointments: the seeded provider publishes every-day availability once; a fresh
    # patient (its own per-account budget) books free slots, one per explicit case.
    def fresh_patient(name):
        # A verified patient signed in as token[name] (its password in password[name]).
        body = signup_body()
        assert post("/api/v1/auth/signup", body).status_code == 201
        assert post("/api/v1/auth/verify-email", {"token": outbox_token(body["email"], "Your verification token:")}).status_code == 204
        r = post("/api/v1/auth/login", {"email": body["email"], "password": body["password"]})
        assert r.status_code == 200, r.text
        token[name], password[name] = r.json()["access_token"], body["password"]

    days = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    availability = {"time_zone": "Europe/Berlin", "slot_minutes": 30, "buffer_minutes": 0,
                    "weekly": [{"day": d, "start": "00:00", "end": "23:45"} for d in days],
                    "specialty": "General practice", "consultation_types": ["video", "in_person"]}
    published = []

    def publish():
        if not published:
            r = http.put(base + "/api/v1/providers/me/availability", json=availability,
                         headers={"authorization": f"Bearer {token['provider']}"}, timeout=30)
            assert r.status_code == 200, r.text
            published.append(True)

    booked = []

    def book(patient="booker"):
        publish()
        r = http.get(f"{base}/api/v1/providers/{provider_id}/slots",
                     headers={"authorization": f"Bearer {token[patient]}"}, timeout=30)
        assert r.status_code == 200, r.text
        # Hours ahead (a patient's changes need 2 hours' notice), a new one each time.
        start = r.json()["items"][8 + 2 * len(booked)]["start"]
        r = post("/api/v1/appointments", {"provider_id": provider_id, "start": start,
                                          "consultation_type": "video"}, token[patient])
        assert r.status_code == 201, r.text
        booked.append(r.json()["id"])
        return r.json()["id"]

    def booking_body():
        publish()
        r = http.get(f"{base}/api/v1/providers/{provider_id}/slots",
                     headers={"authorization": f"Bearer {token['booker']}"}, timeout=30)
        start = r.json()["items"][40]["start"]
        return {"body": {"provider_id": provider_id, "start": start, "consultation_type": "in_person", "reason": "annual check"},
                "headers": {"idempotency-key": uuid.uuid4().hex}}

    # Billing: the seeded provider's video price, payments of the booker's appointments,
    # and a webhook signed with the fake Stripe's secret from the data folder, as any
    # client may sign (docs/payments.md).
    priced = []

    def price():
        if not priced:
            r = http.put(base + "/api/v1/providers/me/prices", json={"consultation_type": "video", "amount": 5000, "currency": "usd"},
                         headers={"authorization": f"Bearer {token['provider']}"}, timeout=30)
            assert r.status_code == 200, r.text
            priced.append(True)

    def pay():
        price()
        r = post("/api/v1/payments", {"appointment_id": book("payer")}, token["payer"])
        assert r.status_code == 201, r.text
        return r.json()

    def signed_webhook():
        import hashlib
        import hmac
        secrets = json.load(open(f"{data_dir}/secrets.json"))
        secret = secrets["docare/local/stripe/webhook_secret"]
        paid = pay()
        now = int(time.time())
        event = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "payment_intent.succeeded", "created": now,
                            "data": {"object": {"id": paid["stripe_payment_intent_id"], "object": "payment_intent", "amount": 5000,
                                                "currency": "usd", "status": "succeeded", "metadata": {"docare_payment_id": paid["id"]}}}})
        signature = hmac.new(secret.encode(), f"{now}.{event}".encode(), hashlib.sha256).hexdigest()
        return {"body": json.loads(event), "raw": event, "headers": {"stripe-signature": f"t={now},v1={signature}"}}

    explicit[("PUT", "/api/v1/providers/me/prices")] = lambda: {"body": {"consultation_type": "video", "amount": 5000, "currency": "usd"}}
    explicit[("POST", "/api/v1/payments")] = lambda: (price(), {"body": {"appointment_id": book("payer")}, "headers": {"idempotency-key": uuid.uuid4().hex}})[1]
    explicit[("GET", "/api/v1/payments/{id}")] = lambda: {"path_parameters": {"id": pay()["id"]}}
    explicit[("GET", "/api/v1/payments/{id}/receipt")] = lambda: {"path_parameters": {"id": pay()["id"]}}
    explicit[("GET", "/api/v1/appointments/{id}/payments")] = lambda: {"path_parameters": {"id": book("payer")}}
    explicit[("POST", "/api/v1/webhooks/stripe")] = signed_webhook

    def google_verification():
        # Google's verification POST, with the subscriber's secret the local stack made.
        secrets = json.load(open(f"{data_dir}/secrets.json"))
        secret = secrets["docare/local/google/webhook_secret"]
        event = json.dumps({"type": "verification"})
        return {"body": json.loads(event), "raw": event, "headers": {"authorization": secret}}

    explicit[("POST", "/api/v1/webhooks/google-health")] = google_verification

    # Video sessions of the video patient's bookings (docs/video.md).
    def video_session(recording=False):
        appointment = book("video")
        r = post("/api/v1/video-calls", {"appointment_id": appointment, "recording_enabled": recording}, token["video"])
        assert r.status_code == 201, r.text
        return r.json()["id"], appointment

    explicit[("POST", "/api/v1/video-calls")] = lambda: {"body": {"appointment_id": book("video"), "recording_enabled": True}}
    explicit[("GET", "/api/v1/video-calls/{id}")] = lambda: {"path_parameters": {"id": video_session()[0]}}
    explicit[("POST", "/api/v1/video-calls/{id}/consent")] = lambda: {"path_parameters": {"id": video_session(True)[0]}, "body": {"recording": True}}
    explicit[("GET", "/api/v1/appointments/{id}/video-calls")] = lambda: {"path_parameters": {"id": video_session()[1]}}

    explicit[("PUT", "/api/v1/providers/me/availability")] = lambda: {"body": availability}
    explicit[("GET", "/api/v1/providers/{id}/slots")] = lambda: (publish(), {"path_parameters": {"id": provider_id}})[1]
    explicit[("POST", "/api/v1/appointments")] = booking_body
    explicit[("GET", "/api/v1/appointments/{id}")] = lambda: {"path_parameters": {"id": book()}}
    explicit[("PATCH", "/api/v1/appointments/{id}")] = lambda: {"path_parameters": {"id": book()}, "body": {"reason": "a sore throat"}}

    # Secure notes (docs/notes.md): a provider of their own ("noter", invited by the
    # admin, TOTP-enrolled: an MFA session, its own per-account budget) in the care of a
    # patient of their own ("notepatient", who books with the seeded provider). The
    # provider writes and changes notes; the patient reads the one shared with them.
    notes_ready = {}
    note_reason = {"access_reason": "schemathesis contract run of the notes routes"}

    def invited_provider(name):
        email = f"noter-{uuid.uuid4().hex[:8]}@example.com"
        r = post("/api/v1/users", {"email": email, "full_name": "Nora Noter", "role": "provider"}, token["admin"])
        assert r.status_code == 201, f"invite: {r.status_code} {r.text}"
        provider = {"id": r.json()["id"], "email": email, "password": "notes provider pass 4 contract"}
        deadline, invite = time.time() + 15, None
        while invite is None and time.time() < deadline:
            for path in sorted(glob.glob(f"{data_dir}/outbox/*.json")):
                message = json.load(open(path))
                found = re.search(r"password/reset\): (\S+)", message.get("body", "")) if message.get("to") == email else None
                if found:
                    invite = found.group(1)
            time.sleep(0.3)
        assert invite, f"no invitation to {email}"
        r = post("/api/v1/auth/password/reset", {"token": invite, "new_password": provider["password"]})
        assert r.status_code in (200, 204), f"set password: {r.status_code} {r.text}"
        first = login(provider)["access_token"]
        r = post("/api/v1/auth/mfa/totp/enroll", {"password": provider["password"]}, first)
        assert r.status_code == 200, f"enrol: {r.status_code} {r.text}"
        provider["totp_secret"] = r.json()["secret"]
        r = post("/api/v1/auth/mfa/totp/confirm", {"code": totp_now(provider)}, first)
        assert r.status_code in (200, 201, 204), f"confirm: {r.status_code} {r.text}"
        token[name] = login(provider)["access_token"]
        return provider

    def notes_setup():
        if not notes_ready:
            noter = invited_provider("noter")
            fresh_patient("notepatient")
            me = http.get(base + "/api/v1/users/me", headers={"authorization": f"Bearer {token['notepatient']}"}, timeout=30).json()
            r = post("/api/v1/care-relationships", {"provider_id": noter["id"], "patient_id": me["id"]}, token["admin"])
            assert r.status_code == 201, f"care for the notes patient: {r.status_code} {r.text}"
            notes_ready["appointment"] = book("notepatient")
            notes_ready["shared"] = secure_note(share=True)
        return notes_ready

    def secure_note(share=False):
        r = post("/api/v1/secure-notes", {"appointment_id": notes_ready["appointment"], "note_type": "progress",
                                          "content": "Contract-run note.", **note_reason}, token["noter"])
        assert r.status_code == 201, f"note: {r.status_code} {r.text}"
        note_id = r.json()["id"]
        if share:
            r = http.put(f"{base}/api/v1/secure-notes/{note_id}/share", json={"shared_with_patient": True, **note_reason},
                         headers={"authorization": f"Bearer {token['noter']}"}, timeout=30)
            assert r.status_code == 200, f"share: {r.status_code} {r.text}"
        return note_id

    def shared_note():
        return notes_setup()["shared"]

    def fresh_note():
        notes_setup()
        return secure_note()

    explicit[("POST", "/api/v1/secure-notes")] = lambda: {"body": {"appointment_id": notes_setup()["appointment"], "note_type": "intake",
                                                                    "content": "Contract-run intake.", **note_reason}}
    explicit[("POST", "/api/v1/secure-notes/{id}/access")] = lambda: {"path_parameters": {"id": shared_note()}, "body": note_reason}
    explicit[("PUT", "/api/v1/secure-notes/{id}")] = lambda: {"path_parameters": {"id": fresh_note()},
                                                               "body": {"content": "Revised.", "expected_version": 1, **note_reason}}
    explicit[("PUT", "/api/v1/secure-notes/{id}/share")] = lambda: {"path_parameters": {"id": shared_note()},
                                                                     "body": {"shared_with_patient": True, **note_reason}}
    explicit[("PUT", "/api/v1/secure-notes/{id}/archive")] = lambda: {"path_parameters": {"id": fresh_note()}, "body": note_reason}
    explicit[("GET", "/api/v1/secure-notes/{id}/versions")] = lambda: {"path_parameters": {"id": shared_note()}}
    explicit[("POST", "/api/v1/secure-notes/{id}/versions/{version}/access")] = lambda: {"path_parameters": {"id": shared_note(), "version": 1}, "body": note_reason}
    explicit[("POST", "/api/v1/appointments/{id}/secure-notes/access")] = lambda: {"path_parameters": {"id": notes_setup()["appointment"]}, "body": note_reason}
    explicit[("GET", "/api/v1/secure-notes/{id}/audit-logs")] = lambda: {"path_parameters": {"id": shared_note()}}

    # Loaded from the served document as a dict: `from_url` leaves out the operation
    # that serves the schema itself, and that route is under test too.
    served = http.get(base + "/api/v1/openapi.json", timeout=30)
    assert served.status_code == 200, served.text
    schema = schemathesis.openapi.from_dict(served.json())
    checks_bite(base, served.json())
    operations = []
    for result in schema.get_all_operations():
        op = result.ok()
        key = (op.method.upper(), op.path)
        if key not in EXCLUDED and not (only_public and op.definition.raw.get("security")):
            operations.append(op)
    operations.sort(key=lambda op: (op.method.upper(), op.path) in LAST)

    # Who calls each authenticated operation.
    who, turn = {}, 0
    for op in operations:
        key = (op.method.upper(), op.path)
        access = op.definition.raw.get("x-docare-access")
        if access == "bearer+admin-mfa" or key == ("GET", "/api/v1/users/{id}/profile"):
            who[key] = "admin"
        elif access == "bearer":
            # The care-relationship delete needs a party (the patient ends its own); TOTP
            # enrolment needs an account without TOTP (the patient).
            if key[1].startswith("/api/v1/medications"):
                who[key] = "medpatient"
            elif key[1].startswith(("/api/v1/conversations", "/api/v1/sync")):
                who[key] = "chatpatient"
            elif key[1].startswith("/api/v1/documents"):
                who[key] = "docpatient"
            elif key == ("PUT", "/api/v1/observations/thresholds"):
                who[key] = "provider"
            elif key[1].startswith(("/api/v1/observations", "/api/v1/devices")):
                who[key] = "obspatient"
            elif key == ("DELETE", "/api/v1/care-relationships/{id}"):
                who[key] = "patient"
            elif "/mfa/totp/" in key[1]:
                # An account without TOTP, of its own (its failure budget: above).
                who[key] = key[1].rsplit("/", 1)[1] + "-patient"
                fresh_patient(who[key])
            elif key == ("PUT", "/api/v1/users/me/profile"):
                # A new phone needs the password: fuzzed wrong ones spend the account's
                # failure budget (shared with MFA challenges), so a patient of its own.
                who[key] = "profile-patient"
                fresh_patient(who[key])
            else:
                who[key] = ["patient", "provider"][turn % 2]
                turn += 1

    # The appointment routes: availability by the provider, the rest by a fresh patient.
    appointment_ops = [key for key in who if key[1].startswith(("/api/v1/appointments", "/api/v1/providers", "/api/v1/payments", "/api/v1/billing"))]
    if appointment_ops:
        # Billing on a patient of its own (the per-account budget).
        fresh_patient("booker")
        fresh_patient("payer")
        for key in appointment_ops:
            by_provider = key in (("PUT", "/api/v1/providers/me/availability"), ("PUT", "/api/v1/providers/me/prices"))
            billing = key[1].startswith(("/api/v1/payments", "/api/v1/billing")) or key[1].endswith("/payments")
            who[key] = "provider" if by_provider else ("payer" if billing else "booker")
    # Secure notes: the patient's reads as the notes patient, the rest as their provider.
    for key in who:
        if "secure-notes" in key[1]:
            patient_side = key in (("POST", "/api/v1/secure-notes/{id}/access"), ("POST", "/api/v1/appointments/{id}/secure-notes/access"))
            who[key] = "notepatient" if patient_side else "noter"

    # Video: a patient of its own (the per-account budget) creates sessions of its bookings.
    video_ops = [key for key in who if key[1].startswith("/api/v1/video-calls") or key[1].endswith("/video-calls")]
    if video_ops:
        fresh_patient("video")
        for key in video_ops:
            who[key] = "video"

    statuses = defaultdict(lambda: defaultdict(int))
    failures = defaultdict(list)
    cases = 0

    def run_case(op, case, key):
        nonlocal cases
        headers = {}
        if key in who:
            headers["authorization"] = f"Bearer {token[who[key]]}"
        try:
            response = case.call(base_url=base, headers=headers)
        except Exception as err:  # a transport error is a failure of the route too
            failures[key].append(f"transport: {err}")
            return
        cases += 1
        statuses[key][response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        # Failed checks raise a FailureGroup, a BaseExceptionGroup (not an Exception).
        except (Exception, BaseExceptionGroup) as err:
            if len(failures[key]) < 3:
                failures[key].append(f"{response.status_code}: {str(err)[:1500]}")

    for op in operations:
        key = (op.method.upper(), op.path)
        build = explicit.get(key)
        if build is not None or not op.path_parameters:
            try:
                parts = build() if build else {}
            except Exception as err:  # e.g. a helper request refused with 429
                failures[key].append(f"building the explicit case failed: {err!r}"[:500])
                parts = None
            if parts is not None:
                case = op.Case(
                    path_parameters=parts.get("path_parameters"),
                    query=parts.get("query"),
                    headers=parts.get("headers"),
                    body=parts["body"] if "body" in parts else schemathesis.core.NOT_SET,
                    media_type="application/json" if "body" in parts else None,
                )
                run_case(op, case, key)

        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def fuzz(case):
            run_case(op, case, key)

        fuzz()

    print(f"schemathesis {schemathesis.SCHEMATHESIS_VERSION}: {len(operations)} operations, {cases} cases, {len(EXCLUDED)} excluded")
    no_success = []
    for op in operations:
        key = (op.method.upper(), op.path)
        seen = dict(sorted(statuses[key].items()))
        ok = sum(n for s, n in seen.items() if 200 <= s < 300)
        print(f"  {key[0]:6} {key[1]:45} as {who.get(key, 'public'):8} 2xx={ok:<3} statuses={seen}")
        if ok == 0:
            no_success.append(key)
    for key, messages in failures.items():
        for message in messages:
            print(f"FAILED {key[0]} {key[1]}: {message}")
    for key in no_success:
        print(f"NO 2xx {key[0]} {key[1]}")
    limited = [key for key in who if statuses[key].get(429) and key != ("PUT", "/api/v1/users/me/profile") and "/mfa/totp/" not in key[1]]
    if limited:
        print(f"note: 429 on {len(limited)} authenticated operations: the per-account budget "
              "(100 / 15 min) ran out; lower MAX_EXAMPLES or spread the operations wider")
    if failures or no_success:
        sys.exit(1)


if __name__ == "__main__":
    main()
