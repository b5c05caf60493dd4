"""The frontend's path in a real browser: headless Chromium (Debian's, driven through
Selenium and Debian's chromedriver) runs the README's "From a web page" block from a
page on a second loopback origin against the local stack.

usage: browser_flow.py REPO_ROOT API_URL WS_URL PAGE_PORT OUTBOX ACCOUNTS_JSON
                       ACCESS_TTL_SECS SCREENSHOT

ACCOUNTS_JSON names an admin and a provider (`{"admin": {id, email, password,
totp_secret}, "provider": {…}}`); they sign in server-side with pyotp codes when needed
(access tokens on this stack live ACCESS_TTL_SECS).

The stack (started by tests/e2e/browser.rs) allows the origin http://127.0.0.1:PAGE_PORT
only. From there the page signs up, verifies with the mailed token (read from the
local outbox: the test-only helper), signs in, reads and updates the profile, waits for
the access token to expire and is refreshed by the README's `api()` on the 401, then
opens the WebSocket with a ticket and receives a message that its provider sends. The
same page served from http://127.0.0.2:PAGE_PORT (another origin) is refused by the
browser itself: `fetch` rejects with a TypeError and the console names the CORS policy;
its WebSocket handshake is refused too. A screenshot of the allowed page's final state
is saved to SCREENSHOT.
"""

import functools
import http.server
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

import pyotp
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

(ROOT, API_URL, WS_URL, PAGE_PORT, OUTBOX, ACCOUNTS, ACCESS_TTL, SCREENSHOT) = sys.argv[1:9]
PAGE_PORT, ACCESS_TTL, ACCOUNTS = int(PAGE_PORT), int(ACCESS_TTL), json.loads(ACCOUNTS)


def fail(message):
    print(f"browser_flow: {message}", file=sys.stderr)
    sys.exit(1)


def readme_frontend():
    """The README's "From a web page" `js` block, pointed at this stack."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    start = text.index("### From a web page")
    end = text.index("\n### ", start + 1)
    blocks = re.findall(r"```js\n(.*?)```", text[start:end], flags=re.S)
    if len(blocks) != 1:
        fail("the README's 'From a web page' section needs exactly one js block")
    code = blocks[0]
    for documented, actual in (("http://localhost:5000/api/v1", API_URL + "/api/v1"),
                               ("ws://localhost:5001", WS_URL)):
        if documented not in code:
            fail(f"the README's block no longer names {documented}")
        code = code.replace(documented, actual)
    return code


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>DoCare browser check</title>
<style>body{font-family:sans-serif;margin:1.5em}pre{background:#f4f4f4;padding:1em}</style>
</head><body><h1>DoCare from a web page</h1><p id="origin"></p><pre id="log"></pre>
<script src="frontend.js"></script>
<script>
document.getElementById('origin').textContent = 'page origin: ' + location.origin;
function show(line) { document.getElementById('log').textContent += line + '\\n'; }
window.events = [];
</script></body></html>
"""


def serve(directory, host):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer((host, PAGE_PORT), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def call(method, path, body=None, token=None):
    """A server-side call (no Origin): the admin and the provider are not in the browser."""
    request = urllib.request.Request(
        API_URL + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json",
                 **({"authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def signed_in(who):
    """An MFA session of a staff account (password, then a pyotp code)."""
    account = ACCOUNTS[who]
    status, step = call("POST", "/api/v1/auth/login",
                        {"email": account["email"], "password": account["password"]})
    if status != 200 or not step.get("mfa_required"):
        fail(f"{who} login: {status} {step}")
    code = pyotp.TOTP(account["totp_secret"]).now()
    status, pair = call("POST", "/api/v1/auth/mfa/challenge",
                        {"mfa_token": step["mfa_token"], "code": code})
    if status != 200:
        fail(f"{who} challenge: {status} {pair}")
    return pair["access_token"]


def mailed_token(address):
    deadline = time.time() + 10
    while time.time() < deadline:
        for name in sorted(os.listdir(OUTBOX)):
            with open(os.path.join(OUTBOX, name)) as f:
                mail = json.load(f)
            if mail["to"] == address:
                return next(w for w in mail["body"].split() if len(w) == 43)
        time.sleep(0.1)
    fail(f"no mail to {address}")


def browser():
    chromium = shutil.which("chromium") or fail("chromium is not installed (scripts/test installs it)")
    driver_path = shutil.which("chromedriver") or fail("chromedriver is not installed (chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,800", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths are given, so Selenium Manager has nothing to download.
    os.environ["SE_OFFLINE"] = "true"
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(30)
    return driver


def run(driver, body, *args):
    """Runs an async function body in the page; returns its value or fails with its error."""
    script = ("const done = arguments[arguments.length - 1];"
              "(async (...args) => {" + body + "})(...Array.from(arguments).slice(0, -1))"
              ".then(value => done({value}), error => done({error: String(error)}));")
    answer = driver.execute_async_script(script, *args)
    if "error" in answer:
        fail(f"the page failed: {answer['error']}")
    return answer.get("value")


def main():
    page_dir = tempfile.mkdtemp(prefix="docare-page-")
    with open(os.path.join(page_dir, "frontend.js"), "w") as f:
        f.write(readme_frontend())
    with open(os.path.join(page_dir, "index.html"), "w") as f:
        f.write(PAGE)
    servers = [serve(page_dir, "127.0.0.1"), serve(page_dir, "127.0.0.2")]
    driver = browser()
    try:
        allowed(driver)
        refused(driver)
    finally:
        driver.quit()
        for server in servers:
            server.shutdown()
    print("browser_flow: the README's frontend works from an allowed origin and is refused from another")


def allowed(driver):
    driver.get(f"http://127.0.0.1:{PAGE_PORT}/index.html")
    email = f"browser.{secrets.token_hex(4)}@example.com"
    password = "Correct-Horse-Battery-" + secrets.token_hex(3)

    status = run(driver, """
        const [email, password] = args;
        const r = await api('/auth/signup', { method: 'POST',
          body: JSON.stringify({ email, password, full_name: 'Browser Patient' }) });
        show('sign-up: ' + r.status); return r.status;""", email, password)
    if status != 201:
        fail(f"sign-up answered {status}")
    token = mailed_token(email)
    status = run(driver, """
        const r = await api('/auth/verify-email', { method: 'POST',
          body: JSON.stringify({ token: args[0] }) });
        show('e-mail verified: ' + r.status); return r.status;""", token)
    if status != 204:
        fail(f"verify-email answered {status}")

    me = run(driver, """
        await login(args[0], args[1]);
        const me = await (await api('/users/me')).json();
        show('signed in as ' + me.email + ' (' + me.role + ')'); return me;""", email, password)
    if me.get("email") != email or me.get("role") != "patient":
        fail(f"/users/me answered {me}")
    patient_id = me["id"]

    profile = run(driver, """
        const put = await api('/users/me/profile', { method: 'PUT',
          body: JSON.stringify({ full_name: 'Browser Patient', time_zone: 'Europe/Berlin' }) });
        if (put.status !== 200) throw new Error('profile update answered ' + put.status);
        const got = await api('/users/me/profile');
        const profile = await got.json();
        show('profile: ' + profile.full_name + ', ' + profile.time_zone + ' (' + got.status + ')');
        return profile;""")
    if profile.get("time_zone") != "Europe/Berlin" or profile.get("full_name") != "Browser Patient":
        fail(f"the profile read back is {profile}")

    # The access token expires; the README's api() refreshes once on the 401.
    time.sleep(ACCESS_TTL + 2)
    refreshed = run(driver, """
        const before = session.access_token, refresh = session.refresh_token;
        const r = await api('/users/me');
        const rotated = session.access_token !== before && session.refresh_token !== refresh;
        show('after expiry: ' + r.status + (rotated ? ', tokens refreshed' : ', NOT refreshed'));
        return { status: r.status, rotated };""")
    if refreshed != {"status": 200, "rotated": True}:
        fail(f"after expiry the page got {refreshed}")

    # Its provider, in its care (an admin's API call), writes to it over REST.
    provider_id = ACCOUNTS["provider"]["id"]
    status, body = call("POST", "/api/v1/care-relationships",
                        {"provider_id": provider_id, "patient_id": patient_id}, signed_in("admin"))
    if status != 201:
        fail(f"care relationship: {status} {body}")
    opened = run(driver, """
        window.socket = await connect(event => { window.events.push(event);
          show('WebSocket: ' + event.type + (event.data && event.data.body ? ': ' + event.data.body : '')); });
        show('WebSocket open (ticket)'); return true;""")
    if opened is not True:
        fail("the WebSocket did not open")
    provider = signed_in("provider")
    status, conversation = call("POST", "/api/v1/conversations",
                                {"participant_ids": [patient_id]}, provider)
    if status != 201:
        fail(f"conversation: {status} {conversation}")
    text = "Hello from your provider " + secrets.token_hex(2)
    status, sent = call("POST", f"/api/v1/conversations/{conversation['id']}/messages",
                        {"client_message_id": secrets.token_hex(8), "body": text}, provider)
    if status != 201:
        fail(f"send: {status} {sent}")
    received = run(driver, """
        for (let i = 0; i < 100; i++) {
          const hit = window.events.find(e => e.type === 'message:received');
          if (hit) return hit.data;
          await new Promise(r => setTimeout(r, 100));
        }
        return null;""")
    if not received or received.get("body") != text or received.get("sender_id") != provider_id:
        fail(f"the page received {received}")
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    if not driver.save_screenshot(SCREENSHOT):
        fail("no screenshot")
    print(f"browser_flow: screenshot of the final page in {SCREENSHOT}")


def refused(driver):
    """Another origin: the server answers, the browser withholds the answer."""
    driver.get(f"http://127.0.0.2:{PAGE_PORT}/index.html")
    driver.get_log("browser")  # start from an empty console
    outcome = run(driver, """
        const tries = {};
        for (const [name, request] of [
            ['health', () => fetch(API_BASE_URL.replace('/api/v1', '') + '/health')],
            ['login', () => login('patient@docare.local', 'whatever-it-is')]]) {
          try { await request(); tries[name] = 'answered'; }
          catch (error) { tries[name] = error.name + ': ' + error.message; }
        }
        tries.websocket = await new Promise(resolve => {
          const socket = new WebSocket(WS_URL + '/?ticket=none');
          socket.onopen = () => resolve('open');
          socket.onerror = () => resolve('refused');
        });
        return tries;""")
    if outcome.get("health") != "TypeError: Failed to fetch":
        fail(f"a disallowed origin's fetch was not refused by the browser: {outcome}")
    if not outcome.get("login", "").startswith("TypeError"):
        fail(f"a disallowed origin's sign-in was not refused by the browser: {outcome}")
    if outcome.get("websocket") != "refused":
        fail(f"a disallowed origin's WebSocket was not refused: {outcome}")
    console = " ".join(entry.get("message", "") for entry in driver.get_log("browser"))
    if "blocked by CORS policy" not in console:
        fail(f"the console does not name the CORS policy: {console[:500]}")
    print("browser_flow: another origin's fetch, sign-in and WebSocket were refused by the browser")


if __name__ == "__main__":
    main()
