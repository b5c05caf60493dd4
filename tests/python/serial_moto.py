"""moto's AWS emulator serving one request at a time, on 127.0.0.1:<port>.

`moto_server` is always threaded, and its DynamoDB TransactWriteItems is not isolated
between threads: it snapshots whole tables with deepcopy while other threads write
(failing with "dictionary changed size during iteration") and restores a snapshot when a
condition fails, which can erase another transaction's writes. Real DynamoDB isolates
transactions (serializable). The race tests that fire concurrent transactions at the
emulator run it through this script instead: requests still arrive concurrently, and
each transaction is applied whole before the next, as DynamoDB promises.
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

if __name__ == "__main__":
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=False, use_reloader=False)
