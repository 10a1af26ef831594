"""imgforge default application for uWSGI: reads one row from the database
primary to show that every tier of the stack works.

/cached is the one route the web nodes may cache (for 60 s); every other
answer, and every error, says no-store. The PHP app (index.php) answers the
same."""
import json
import os
import socket

import pymysql

CONFIG = os.environ.get("IMGFORGE_DB_CONFIG", "/etc/imgforge/db.json")
TEXT = ("Content-Type", "text/plain; charset=utf-8")
NO_STORE = ("Cache-Control", "no-store")
CACHEABLE = ("Cache-Control", "public, max-age=60")


def application(environ, start_response):
    cacheable = environ.get("PATH_INFO", "/") == "/cached"
    try:
        with open(CONFIG, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        start_response("503 Service Unavailable", [TEXT, NO_STORE])
        return [b"no database configured yet\n"]
    try:
        conn = pymysql.connect(host=cfg["host"], port=int(cfg.get("port", 3306)),
                               user=cfg["user"], password=cfg["password"],
                               database=cfg.get("database", "imgforge"), connect_timeout=3)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT message FROM greeting ORDER BY id LIMIT 1")
            row = cur.fetchone()
    except Exception as e:  # noqa: BLE001 - shown to the operator
        start_response("502 Bad Gateway", [TEXT, NO_STORE])
        return [f"database error: {e}\n".encode()]
    body = f"{row[0] if row else 'no rows'} (served by {socket.gethostname()})\n"
    start_response("200 OK", [TEXT, CACHEABLE if cacheable else NO_STORE])
    return [body.encode()]
