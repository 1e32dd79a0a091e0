#!/usr/bin/env python3
"""A small demo application server for trident's quick start: one process per "provider",
serving HTTP/1.1 with keep-alive on one or more addresses. Every response says which provider and
server answered, so a person can watch trident spread traffic and fail over."""
import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(provider, server_id):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 65536  # one write per response: no Nagle wait between head and body
        server_version = "demo-app"

        def _reply(self, body_obj, status=200):
            body = (json.dumps(body_obj) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _info(self):
            return {
                "provider": provider,
                "server": server_id,
                "method": self.command,
                "path": self.path,
                "request_id": self.headers.get("X-Request-Id"),
                "forwarded_for": self.headers.get("X-Forwarded-For"),
            }

        def do_GET(self):
            self._reply(self._info())

        do_HEAD = do_GET

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(n) if n else b""
            info = self._info()
            info["received_bytes"] = len(data)
            self._reply(info)

        do_PUT = do_POST

        def log_message(self, fmt, *args):
            pass

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--provider", required=True)
    ap.add_argument("--listen", action="append", required=True,
                    help="ADDRESS:PORT=SERVER_ID, repeatable")
    args = ap.parse_args()
    servers = []
    for spec in args.listen:
        addr, server_id = spec.split("=", 1)
        host, port = addr.rsplit(":", 1)
        srv = ThreadingHTTPServer((host, int(port)), make_handler(args.provider, server_id))
        srv.daemon_threads = True
        servers.append(srv)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
