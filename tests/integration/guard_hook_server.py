#!/usr/bin/python3
# guard_hook_server.py - an external guard service for tests/integration/test_gateway_gov.sh, in
# the spirit of Envoy's ext_authz: POST /guard with {"tenant","model","prompt"}.
#   guard_hook_server.py PORT   answers 403 {"message":...} when the prompt contains "forbidden
#                               topic", sleeps 3 s when it contains "slow hook", else 200 {}
# Every request body is appended (one JSON line) to PORT.log next to this process's cwd.
# Prints "ready" once listening. Runs until killed. Standard library only.
import http.server
import json
import socketserver
import sys
import time

port = int(sys.argv[1])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        with open("hook-%d.log" % port, "ab") as f:
            f.write(body + b"\n")
        try:
            prompt = json.loads(body).get("prompt", "")
        except ValueError:
            prompt = ""
        if "slow hook" in prompt:
            time.sleep(3)
        if "forbidden topic" in prompt:
            out, code = json.dumps({"message": "the guard refuses this topic"}).encode(), 403
        else:
            out, code = b"{}", 200
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = Server(("127.0.0.1", port), Handler)
print("ready", flush=True)
srv.serve_forever()
