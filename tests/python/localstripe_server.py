"""Runs localstripe (a fake Stripe server from PyPI) on loopback only, from scratch.

localstripe's own entry point listens on every interface and keeps its store in a
file under /tmp; the tests want neither. Usage: localstripe_server.py PORT
"""
import sys

from aiohttp import web
from localstripe.resources import store
from localstripe.server import app

# No state file: every run starts empty and runs side by side with others.
store.dump_to_disk = lambda: None

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
