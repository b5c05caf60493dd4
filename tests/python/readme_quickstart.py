"""The README's quick start, run as a newcomer would run it, from the README itself.

usage: readme_quickstart.py REPO_ROOT

1. Reads README.md's "## Two commands" section: its first `sh` block holds the two
   set-up commands (the local stack, then the test command), its second `sh` block the
   "try it" session.
2. Starts the local stack with the first command exactly as written (`bash -c`), in the
   repository, with only its environment chosen by this test: free ports and a
   temporary data folder (`DOCARE_LOCAL_PORT`, `DOCARE_LOCAL_WS_PORT`,
   `DOCARE_LOCAL_DATA_DIR`, which the README documents), so a developer's own stack and
   data are never touched. It checks what the stack prints on start-up.
3. Runs the "try it" block as one bash script, as written but for the same three
   substitutions (`127.0.0.1:5000`, `127.0.0.1:5001` and `.docare-local/` become the
   chosen ports and folder), and compares every line it prints with the README's
   expected-output lines: comment lines holding JSON (`# {...}`), in order. JSON is
   compared as values; a string with `…` in the README matches any string that starts
   with what precedes the `…`.
4. Checks that the second set-up command is the one CI runs (`.ci/run` runs it).

Exits non-zero with the first mismatch, so a README command or answer that drifts from
the system fails the test run.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = sys.argv[1]
README = os.path.join(ROOT, "README.md")


def sh_blocks(section):
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def quickstart_section():
    text = open(README, encoding="utf-8").read()
    start = text.index("## Two commands")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def command_of(line):
    """A command line without its trailing comment."""
    return line.split("  #", 1)[0].strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def matches(expected, actual):
    if isinstance(expected, str) and "…" in expected:
        return isinstance(actual, str) and actual.startswith(expected.split("…", 1)[0])
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(expected[k], actual[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual))
        )
    return expected == actual


def fail(message):
    print(f"readme_quickstart: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    section = quickstart_section()
    blocks = sh_blocks(section)
    if len(blocks) < 2:
        fail("the Two commands section needs the set-up block and the try-it block")
    setup = [command_of(l) for l in blocks[0].splitlines() if command_of(l)]
    if len(setup) != 2:
        fail(f"expected two set-up commands, found {setup}")
    stack_command, test_command = setup
    ci = open(os.path.join(ROOT, ".ci/run"), encoding="utf-8").read()
    if f"exec {test_command}" not in ci:
        fail(f"the README's test command `{test_command}` is not what .ci/run runs")

    http_port, ws_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="docare-readme-")
    env = dict(os.environ)
    env.update(
        DOCARE_LOCAL_PORT=str(http_port),
        DOCARE_LOCAL_WS_PORT=str(ws_port),
        DOCARE_LOCAL_DATA_DIR=data_dir,
        DOCARE_LOG="warn",
    )
    env.pop("DOCARE_LOCAL_DEV_LIMITS", None)
    with tempfile.TemporaryFile() as out:
        stack = subprocess.Popen(
            ["bash", "-c", stack_command],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{http_port}"
            deadline = time.time() + 600  # `cargo run` may have to build the binary
            while True:
                if stack.poll() is not None:
                    out.seek(0)
                    fail(f"`{stack_command}` exited with {stack.returncode}:\n{out.read().decode()}")
                try:
                    urllib.request.urlopen(base + "/health", timeout=2)
                    break
                except Exception:
                    if time.time() > deadline:
                        fail("the local stack did not answer /health within 10 minutes")
                    time.sleep(0.5)
            expected = (
                f"REST API:  http://127.0.0.1:{http_port}",
                f"WebSocket: ws://127.0.0.1:{ws_port}",
                "seed-accounts.json",
                "limits:    production values",
            )
            # The servers answer as soon as they listen; the banner follows a moment later.
            banner_deadline = time.time() + 10
            while True:
                out.seek(0)
                banner = out.read().decode()
                if all(line in banner for line in expected) or time.time() > banner_deadline:
                    break
                time.sleep(0.2)
            for line in expected:
                if line not in banner:
                    fail(f"the stack's start-up output lacks {line!r}:\n{banner}")
            run_try_it(blocks[1], http_port, ws_port, data_dir)
        finally:
            os.killpg(stack.pid, signal.SIGTERM)
            try:
                stack.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(stack.pid, signal.SIGKILL)
            shutil.rmtree(data_dir, ignore_errors=True)
    print("readme_quickstart: the README's commands and answers hold")


def run_try_it(block, http_port, ws_port, data_dir):
    expected = [
        json.loads(line[2:])
        for line in block.splitlines()
        if line.startswith("# {") or line.startswith("# [")
    ]
    if not expected:
        fail("the try-it block shows no answers to compare")
    script = (
        block.replace("127.0.0.1:5000", f"127.0.0.1:{http_port}")
        .replace("127.0.0.1:5001", f"127.0.0.1:{ws_port}")
        .replace(".docare-local/", data_dir.rstrip("/") + "/")
    )
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        fail(f"the try-it block failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    printed = [line for line in result.stdout.splitlines() if line.strip()]
    if len(printed) != len(expected):
        fail(f"the block printed {len(printed)} lines, the README shows {len(expected)}:\n{result.stdout}")
    for want, got in zip(expected, printed):
        try:
            value = json.loads(got)
        except ValueError:
            fail(f"not JSON: {got!r}")
        if not matches(want, value):
            fail(f"README shows {json.dumps(want, ensure_ascii=False)}\nthe system answered {got}")


if __name__ == "__main__":
    main()
