"""imgforge default application for uWSGI: reads one row from the database
primary to show that every tier of the stack works.

/cached is the one route the web nodes may cache (for 60 s); every other
answer, and every error, says no-store. /replica reads the same row from the
db replica db.json names ("replica": {host, port}), read-only, and from the
primary when it names none; its answer says which host answered. The PHP app
(index.php) answers the same.

Each request's span (OpenTelemetry, OTLP/JSON) goes to the node's agent on
loopback (127.0.0.1:4318) once the answer has been sent; its trace id is the
one in the traceparent nginx passes (HTTP_TRACEPARENT). The agent forwards it
to the traces endpoint given at boot, or nowhere."""
import json
import os
import re
import socket
import time
import urllib.parse
import urllib.request

import pymysql

CONFIG = os.environ.get("IMGFORGE_DB_CONFIG", "/etc/imgforge/db.json")
TEXT = ("Content-Type", "text/plain; charset=utf-8")
NO_STORE = ("Cache-Control", "no-store")
CACHEABLE = ("Cache-Control", "public, max-age=60")


SPANS = "http://127.0.0.1:4318/v1/traces"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def span(environ, status, start, end):
    """The request's span as an OTLP/JSON export."""
    m = TRACEPARENT.match(environ.get("HTTP_TRACEPARENT", ""))
    if m and m.group(1) != "0" * 32 and m.group(2) != "0" * 16:
        trace, parent = m.group(1), m.group(2)
    else:
        trace, parent = os.urandom(16).hex(), ""
    method = environ.get("REQUEST_METHOD", "GET")
    path = request_path(environ)

    def attr(k, v):
        return {"key": k, "value": v}

    s = {
        "traceId": trace,
        "spanId": os.urandom(8).hex(),
        "name": f"{method} {path}",
        "kind": 2,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [
            attr("http.request.method", {"stringValue": method}),
            attr("url.path", {"stringValue": path}),
            attr("http.response.status_code", {"intValue": str(status)}),
        ],
        "status": {"code": 2 if status >= 500 else 0},
    }
    if parent:
        s["parentSpanId"] = parent
    return {"resourceSpans": [{
        "resource": {"attributes": [
            attr("service.name", {"stringValue": "imgforge-app"}),
            attr("host.name", {"stringValue": socket.gethostname()}),
        ]},
        "scopeSpans": [{"scope": {"name": "imgforge-app"}, "spans": [s]}],
    }]}


def request_path(environ):
    """The request's path. nginx speaks FastCGI to uWSGI, whose params
    carry the path in REQUEST_URI (and DOCUMENT_URI), not PATH_INFO; the
    PHP app reads REQUEST_URI too."""
    uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/"
    return urllib.parse.urlsplit(uri).path or "/"


class Traced:
    """The answer's body; its close, which the server calls once the body
    has been sent, sends the span."""

    def __init__(self, body, environ, status, start):
        self.body, self.environ, self.status, self.start = body, environ, status, start

    def __iter__(self):
        return iter(self.body)

    def close(self):
        data = json.dumps(span(self.environ, self.status, self.start, time.time_ns())).encode()
        req = urllib.request.Request(SPANS, data=data, headers={"Content-Type": "application/json"})
        try:
            # The agent answers at once; without one (no traces endpoint)
            # the connection is refused at once.
            urllib.request.urlopen(req, timeout=1).close()
        except OSError:
            pass


def application(environ, start_response):
    start = time.time_ns()

    def answer(status, headers, body):
        start_response(status, headers)
        return Traced([body], environ, int(status.split()[0]), start)

    return answer_request(environ, answer)


def server(cfg, path):
    """The server a request reads from, and what to call it in the answer:
    the primary, or on /replica the replica when one is configured."""
    if path != "/replica":
        return cfg["host"], int(cfg.get("port", 3306)), ""
    replica = cfg.get("replica")
    if isinstance(replica, dict) and replica.get("host"):
        return replica["host"], int(replica.get("port", 3306)), "replica"
    return cfg["host"], int(cfg.get("port", 3306)), "primary"


def answer_request(environ, answer):
    path = request_path(environ)
    cacheable = path == "/cached"
    try:
        with open(CONFIG, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return answer("503 Service Unavailable", [TEXT, NO_STORE], b"no database configured yet\n")
    try:
        host, port, source = server(cfg, path)
        conn = pymysql.connect(host=host, port=port,
                               user=cfg["user"], password=cfg["password"],
                               database=cfg.get("database", "imgforge"), connect_timeout=3)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT message FROM greeting ORDER BY id LIMIT 1")
            row = cur.fetchone()
    except Exception as e:  # noqa: BLE001 - shown to the operator
        return answer("502 Bad Gateway", [TEXT, NO_STORE], f"database error: {e}\n".encode())
    message = row[0] if row else "no rows"
    if source:
        body = f"{message} (served by {socket.gethostname()}, read from the {source} {host})\n"
    else:
        body = f"{message} (served by {socket.gethostname()})\n"
    return answer("200 OK", [TEXT, CACHEABLE if cacheable else NO_STORE], body.encode())
