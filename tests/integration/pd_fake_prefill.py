#!/usr/bin/python3
# pd_fake_prefill.py - a misbehaving prefill endpoint on 127.0.0.1 for tests/integration/
# test_pd_gateway.sh. It looks healthy to the gateway (GET /health 200, /v1/models, vLLM gauges on
# /metrics) but answers every POST in one way:
#
#   pd_fake_prefill.py PORT MODEL MODE LOG
#     garbage   200 text/plain that is not JSON
#     null      200 JSON completion whose kv_transfer_params is null (kept no blocks)
#     error     500 JSON error
#     slow      waits 30 s, then answers like null (for the gateway's prefill timeout)
#
# Each POST is appended to LOG as one JSON line {"path", "request_id", "body"}. Prints "ready"
# once listening; runs until killed. Standard library only.
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, model, mode, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, ctype, body):
        raw = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, "text/plain", "")
        elif self.path == "/v1/models":
            self.reply(200, "application/json", json.dumps(
                {"object": "list", "data": [{"id": model, "object": "model", "max_model_len": 4096}]}))
        elif self.path == "/metrics":
            lbl = '{model_name="%s"}' % model
            self.reply(200, "text/plain", "".join(
                "%s%s 0.0\n" % (n, lbl) for n in
                ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")))
        else:
            self.reply(404, "text/plain", "not found")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace")
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body
        with lock:
            with open(log_path, "a") as f:
                f.write(json.dumps({"path": self.path, "request_id": self.headers.get("X-Request-Id"),
                                    "body": parsed}) + "\n")
        if mode == "garbage":
            self.reply(200, "text/plain", "<html>definitely not JSON")
        elif mode == "error":
            self.reply(500, "application/json",
                       '{"error":{"message":"boom","type":"InternalServerError","param":null,"code":500}}')
        else:
            if mode == "slow":
                time.sleep(30)
            self.reply(200, "application/json", json.dumps(
                {"id": "cmpl-x", "object": "text_completion", "created": 0, "model": model,
                 "choices": [{"index": 0, "text": "a", "logprobs": None, "finish_reason": "length"}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                 "kv_transfer_params": None}))


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
