#!/usr/bin/python3
# bench_bad_server.py - misbehaving "OpenAI" servers on 127.0.0.1 for tests/integration/test_bench.sh.
#
#   bench_bad_server.py PORT stall   accept, read the request, never answer (hold the socket)
#   bench_bad_server.py PORT cycle   answer each request (one per connection, then close) in turn
#                                    with: malformed SSE JSON; a valid chunk and no [DONE];
#                                    HTTP 429; HTTP 500; an in-band error event; a valid stream
# Prints "ready" once listening. Runs until killed. Standard library only.
import socket
import sys
import threading

port, mode = int(sys.argv[1]), sys.argv[2]
held = []
counter = [0]
lock = threading.Lock()

CHUNK = 'data: {"choices":[{"index":0,"text":"hi","finish_reason":null}]}\n\n'
USAGE = ('data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,'
         '"prompt_tokens_details":{"cached_tokens":0}}}\n\n')


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        b = conn.recv(65536)
        if not b:
            return False
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        b = conn.recv(65536)
        if not b:
            return False
        body += b
    return True


def stream(conn, body, status="200 OK", ctype="text/event-stream"):
    raw = body.encode()
    conn.sendall(("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                  "Connection: close\r\n\r\n" % (status, ctype, len(raw))).encode() + raw)


def handle(conn):
    try:
        if not read_request(conn):
            conn.close()
            return
        if mode == "stall":
            held.append(conn)  # never answered, never closed
            return
        with lock:
            k = counter[0] % 6
            counter[0] += 1
        if k == 0:
            stream(conn, CHUNK + "data: {not json\n\n" + "data: [DONE]\n\n")
        elif k == 1:
            stream(conn, CHUNK)
        elif k == 2:
            stream(conn, '{"error":{"message":"rate limited","type":"RateLimitError","code":429}}',
                   "429 Too Many Requests", "application/json")
        elif k == 3:
            stream(conn, '{"error":{"message":"boom","type":"InternalServerError","code":500}}',
                   "500 Internal Server Error", "application/json")
        elif k == 4:
            stream(conn, CHUNK + 'data: {"error":{"message":"engine failed","code":500}}\n\n'
                   + "data: [DONE]\n\n")
        else:
            stream(conn, CHUNK + USAGE + "data: [DONE]\n\n")
        conn.close()
    except OSError:
        pass


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
