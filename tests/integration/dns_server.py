#!/usr/bin/python3
"""dns_server.py - a tiny UDP DNS server for tests/integration/test_gateway_discovery.sh (standard
library only). Usage: dns_server.py PORT ZONEFILE. Binds 127.0.0.1:PORT and rereads ZONEFILE on
every query. ZONEFILE lines:

    silent                 do not answer anything (a server gone quiet)
    srv NAME PORT TARGET   an SRV record (priority 10, weight 10)
    a NAME ADDRESS         an A record

SRV answers carry the targets' A records in the additional section unless the file has a line
`noadditional`. Unknown names get NXDOMAIN; a known name without records of the type asked for gets
an empty NOERROR answer. Prints "ready" once bound.
"""
import socket
import struct
import sys


def read_zone(path):
    zone = {"silent": False, "additional": True, "srv": [], "a": []}
    try:
        with open(path) as f:
            for line in f:
                w = line.split()
                if not w or w[0].startswith("#"):
                    continue
                if w[0] == "silent":
                    zone["silent"] = True
                elif w[0] == "noadditional":
                    zone["additional"] = False
                elif w[0] == "srv" and len(w) == 4:
                    zone["srv"].append((w[1].lower().rstrip("."), int(w[2]), w[3].lower().rstrip(".")))
                elif w[0] == "a" and len(w) == 3:
                    zone["a"].append((w[1].lower().rstrip("."), w[2]))
    except OSError:
        pass
    return zone


def enc_name(name):
    out = b""
    for label in name.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rr(name, rtype, rdata):
    return enc_name(name) + struct.pack("!HHIH", rtype, 1, 30, len(rdata)) + rdata


def answer(q, zone):
    if len(q) < 17:
        return None
    qid, flags = struct.unpack("!HH", q[:4])
    i, labels = 12, []
    while i < len(q) and q[i]:
        n = q[i]
        labels.append(q[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += n + 1
    if i + 5 > len(q):
        return None
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    name = ".".join(labels).lower()
    known = {n for n, _, _ in zone["srv"]} | {n for n, _ in zone["a"]}
    an, ar = [], []
    if qtype == 33:
        for n, port, target in zone["srv"]:
            if n == name:
                an.append(rr(name, 33, struct.pack("!HHH", 10, 10, port) + enc_name(target)))
                if zone["additional"]:
                    for an_, addr in zone["a"]:
                        if an_ == target:
                            a = rr(target, 1, socket.inet_aton(addr))
                            if a not in ar:
                                ar.append(a)
    elif qtype == 1:
        for n, addr in zone["a"]:
            if n == name:
                an.append(rr(name, 1, socket.inet_aton(addr)))
    rcode = 0 if name in known else 3
    hdr = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, len(an), 0, len(ar))
    return hdr + question + b"".join(an) + b"".join(ar)


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        q, peer = s.recvfrom(4096)
        zone = read_zone(path)
        if zone["silent"]:
            continue
        r = answer(q, zone)
        if r:
            s.sendto(r, peer)


if __name__ == "__main__":
    main()
