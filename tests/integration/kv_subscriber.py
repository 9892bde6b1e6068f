#!/usr/bin/python3
"""kv_subscriber.py - a standalone vLLM KV-cache event subscriber for the integration tests.

Subscribes to a publisher's ZMQ PUB socket (spec research/vllm-interfaces.md §3), decodes every
3-frame message [topic, seq (8 B big-endian), msgpack KVEventBatch], checks seq continuity and
writes one JSON line per event:

  {"seq": 3, "ts": 1733000000.1, "type": "BlockStored", "block_hashes": [...],
   "parent_block_hash": null, "token_ids": [...], "block_size": 16, "medium": "GPU", ...}
  {"seq": 4, "ts": ..., "type": "BlockRemoved", "block_hashes": [...], "medium": "GPU"}
  {"seq": 5, "ts": ..., "type": "AllBlocksCleared"}

Accepted shapes (consumer rules, spec §3.7): outer batch as an array of 2 or 3 elements or a
map; events as "type"-tagged maps or legacy tagged arrays; hashes as ints (uint64 or int64) or
bin (32 bytes), folded to the last 8 bytes big-endian. Unknown event tags and keys are ignored.

Usage (run with /usr/bin/python3, which has python3-zmq and python3-msgpack):
  kv_subscriber.py --endpoint tcp://127.0.0.1:PORT [--topic T] [--bind]
                   [--duration S | --until-idle S] [--out FILE] [--expect-first-seq N]
                   [--verify-chain SEED BLOCK_SIZE [--salt S ...]]
  kv_subscriber.py --in EVENTS.jsonl --verify-chain SEED BLOCK_SIZE [--salt S ...]

Exit status: 0 on success; 2 on a malformed frame or payload; 3 on a seq gap; 4 when
--verify-chain found hash mismatches; 64 on bad usage. Problems are reported on stderr.

--verify-chain recomputes each BlockStored hash with vLLM's sha256_cbor (hashlib plus a
hand-written canonical CBOR encoder for [bytes32 parent, [token, ...], extra]). Events carry
only the low 64 bits of a parent, so full digests of verified blocks are remembered by their
low64 (starting with NONE_HASH for a null parent). A parent never seen (subscriber joined late)
is counted as "unknown_parent", not as a mismatch. --salt S adds a candidate cache_salt for
first blocks (extra = [S]); without a match the block is a mismatch.

Importable: none_hash(), block_hash(), low64(), ChainVerifier, decode_batch().
Thread-safety: single-threaded tool.
"""

import argparse
import hashlib
import json
import signal
import struct
import sys
import time

MASK64 = (1 << 64) - 1

EXIT_OK, EXIT_MALFORMED, EXIT_GAP, EXIT_MISMATCH, EXIT_USAGE = 0, 2, 3, 4, 64


class Malformed(Exception):
    """A frame or payload that violates the wire format."""


# --------------------------------------------------------------------------- sha256_cbor


def _cbor_head(major, n):
    if n < 24:
        return bytes([(major << 5) | n])
    if n <= 0xFF:
        return bytes([(major << 5) | 24, n])
    if n <= 0xFFFF:
        return bytes([(major << 5) | 25]) + struct.pack(">H", n)
    if n <= 0xFFFFFFFF:
        return bytes([(major << 5) | 26]) + struct.pack(">I", n)
    return bytes([(major << 5) | 27]) + struct.pack(">Q", n)


def cbor(x):
    """Canonical CBOR for the few types the block hash uses."""
    if x is None:
        return b"\xf6"
    if isinstance(x, bool):
        return b"\xf5" if x else b"\xf4"
    if isinstance(x, int):
        return _cbor_head(0, x) if x >= 0 else _cbor_head(1, -1 - x)
    if isinstance(x, (bytes, bytearray)):
        return _cbor_head(2, len(x)) + bytes(x)
    if isinstance(x, str):
        b = x.encode("utf-8")
        return _cbor_head(3, len(b)) + b
    if isinstance(x, (list, tuple)):
        return _cbor_head(4, len(x)) + b"".join(cbor(e) for e in x)
    raise TypeError("cannot CBOR-encode %r" % type(x))


def none_hash(seed):
    """NONE_HASH for a PYTHONHASHSEED-like seed string: SHA256(cbor_text(seed))."""
    return hashlib.sha256(cbor(str(seed))).digest()


def block_hash(parent, tokens, extra=None):
    """sha256_cbor of one block: SHA256(cbor([parent32, [tokens], extra]))."""
    return hashlib.sha256(cbor([bytes(parent), list(tokens), extra])).digest()


def low64(digest):
    """Event-visible id: the last 8 bytes of the digest read big-endian."""
    return int.from_bytes(digest[-8:], "big")


def _selfcheck():
    """The spec §4.4 vectors; guards the hand-written CBOR."""
    n = none_hash("0")
    assert n.hex() == "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e"
    b0 = block_hash(n, range(1, 17))
    assert low64(b0) == 3236607068019569386
    assert low64(block_hash(b0, range(17, 33))) == 2758186210834249151
    assert low64(block_hash(n, range(1, 17), ["my-lora"])) == 15444946753610453501


class ChainVerifier:
    """Recomputes BlockStored hashes, remembering full digests by low64."""

    def __init__(self, seed, block_size, salts=()):
        self.block_size = int(block_size)
        self.none = none_hash(seed)
        self.salts = list(salts)
        self.known = {}  # low64 -> full digest of blocks verified so far
        self.blocks = self.ok = self.mismatches = self.unknown_parent = 0
        self.problems = []

    def _note(self, msg):
        if len(self.problems) < 50:
            self.problems.append(msg)

    def feed(self, ev):
        """Checks one decoded event (dict as written by this tool); ignores other types."""
        if ev.get("type") != "BlockStored":
            return
        hashes, toks, bs = ev["block_hashes"], ev["token_ids"], ev.get("block_size")
        seq = ev.get("seq")
        if bs != self.block_size or len(toks) != self.block_size * len(hashes):
            self.mismatches += len(hashes)
            self.blocks += len(hashes)
            self._note("seq %s: block_size %s / %d token_ids for %d hashes (expected block size %d)"
                       % (seq, bs, len(toks), len(hashes), self.block_size))
            return
        parent_id = ev.get("parent_block_hash")
        if parent_id is None:
            parent, first = self.none, True
        else:
            parent, first = self.known.get(parent_id), False
        for i, h in enumerate(hashes):
            self.blocks += 1
            blk = toks[i * self.block_size:(i + 1) * self.block_size]
            if parent is None:
                self.unknown_parent += 1
                continue  # cannot verify this or (by chaining) the rest of this event
            extras = [None] + ([[s] for s in self.salts] if first and i == 0 else [])
            found = None
            for extra in extras:
                d = block_hash(parent, blk, extra)
                if low64(d) == h:
                    found = d
                    break
            if found is None:
                self.mismatches += 1
                self._note("seq %s: block %d hash %d != sha256_cbor %d"
                           % (seq, i, h, low64(block_hash(parent, blk, None))))
                parent = None
                continue
            self.ok += 1
            self.known[h] = found
            parent = found

    def summary(self):
        return ("verify-chain: blocks=%d ok=%d mismatches=%d unknown_parent=%d"
                % (self.blocks, self.ok, self.mismatches, self.unknown_parent))


# ------------------------------------------------------------------------------ decoding


def _hash(v, what):
    if isinstance(v, bool):
        raise Malformed("%s: bool is not a hash" % what)
    if isinstance(v, int):
        return v & MASK64  # int64 values fold to the same uint64
    if isinstance(v, (bytes, bytearray)):
        if len(v) < 8:
            raise Malformed("%s: %d-byte bin hash" % (what, len(v)))
        return int.from_bytes(bytes(v[-8:]), "big")
    raise Malformed("%s: hash of type %s" % (what, type(v).__name__))


def _hash_list(v, what):
    if not isinstance(v, (list, tuple)):
        raise Malformed("%s: block_hashes is not an array" % what)
    return [_hash(h, what) for h in v]


def _int_list(v, what):
    if not isinstance(v, (list, tuple)) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in v):
        raise Malformed("%s: token_ids is not an array of ints" % what)
    return list(v)


# Field order of the legacy tagged arrays (after the tag), spec §3.5.
_LEGACY_FIELDS = {
    "BlockStored": ["block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id",
                    "medium", "lora_name", "extra_keys", "group_idx", "kv_cache_spec_kind",
                    "kv_cache_spec_sliding_window"],
    "BlockRemoved": ["block_hashes", "medium", "group_idx"],
    "AllBlocksCleared": [],
}


def decode_event(ev, what="event"):
    """Returns a normalised dict for one event, or None for an unknown tag."""
    if isinstance(ev, dict):
        tag = ev.get("type")
        fields = ev
    elif isinstance(ev, (list, tuple)) and ev:
        tag = ev[0]
        names = _LEGACY_FIELDS.get(tag)
        if names is None:
            return None if isinstance(tag, str) else _bad_tag(tag, what)
        fields = dict(zip(names, ev[1:]))
    else:
        raise Malformed("%s: neither a map nor a tagged array" % what)
    if not isinstance(tag, str):
        return _bad_tag(tag, what)
    if tag == "BlockStored":
        for k in ("block_hashes", "token_ids", "block_size"):
            if k not in fields:
                raise Malformed("%s: BlockStored without %s" % (what, k))
        parent = fields.get("parent_block_hash")
        out = {
            "type": tag,
            "block_hashes": _hash_list(fields["block_hashes"], what),
            "parent_block_hash": None if parent is None else _hash(parent, what),
            "token_ids": _int_list(fields["token_ids"], what),
            "block_size": fields["block_size"],
        }
        if not isinstance(out["block_size"], int) or out["block_size"] <= 0:
            raise Malformed("%s: block_size %r" % (what, out["block_size"]))
        for k in ("medium", "lora_name", "lora_id", "group_idx"):
            if fields.get(k) is not None:
                out[k] = fields[k]
        return out
    if tag == "BlockRemoved":
        if "block_hashes" not in fields:
            raise Malformed("%s: BlockRemoved without block_hashes" % what)
        out = {"type": tag, "block_hashes": _hash_list(fields["block_hashes"], what)}
        for k in ("medium", "group_idx"):
            if fields.get(k) is not None:
                out[k] = fields[k]
        return out
    if tag == "AllBlocksCleared":
        return {"type": tag}
    return None  # unknown tag: ignored (spec §3.7)


def _bad_tag(tag, what):
    raise Malformed("%s: event tag %r is not a string" % (what, tag))


def decode_batch(payload):
    """Returns (ts, [event dicts]) from a msgpack KVEventBatch payload."""
    import msgpack

    try:
        batch = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several exception types
        raise Malformed("payload is not msgpack: %s %s" % (type(e).__name__, e))
    if isinstance(batch, (list, tuple)):
        if len(batch) not in (2, 3):
            raise Malformed("outer batch array has %d elements" % len(batch))
        ts, events = batch[0], batch[1]
    elif isinstance(batch, dict):
        ts, events = batch.get("ts"), batch.get("events")
    else:
        raise Malformed("outer batch is a %s" % type(batch).__name__)
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        raise Malformed("batch ts is %r" % (ts,))
    if not isinstance(events, (list, tuple)):
        raise Malformed("batch events is not an array")
    out = []
    for i, ev in enumerate(events):
        d = decode_event(ev, "event %d" % i)
        if d is not None:
            out.append(d)
    return float(ts), out


# -------------------------------------------------------------------------------- main


def _die(code, msg):
    sys.stderr.write("kv_subscriber: %s\n" % msg)
    sys.exit(code)


def _run_file(args, verifier):
    n = 0
    with open(args.infile) as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except ValueError as e:
                _die(EXIT_MALFORMED, "%s:%d: %s" % (args.infile, ln, e))
            verifier.feed(ev)
            n += 1
    return n


def _run_live(args, verifier):
    import zmq

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, args.topic.encode())
    if args.bind:
        sock.bind(args.endpoint)
    else:
        sock.connect(args.endpoint)
    sys.stderr.write("kv_subscriber: %s %s topic=%r\n"
                     % ("bound" if args.bind else "connected", args.endpoint, args.topic))
    out = open(args.out, "w") if args.out else sys.stdout
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)

    start = last_msg = time.monotonic()
    expect = args.expect_first_seq
    n_msgs = n_events = 0
    code = EXIT_OK
    try:
        while not stop:
            now = time.monotonic()
            if args.duration is not None and now - start >= args.duration:
                break
            if args.until_idle is not None and now - last_msg >= args.until_idle:
                break
            if not poller.poll(100):
                continue
            frames = sock.recv_multipart()
            last_msg = time.monotonic()
            n_msgs += 1
            if len(frames) != 3:
                raise Malformed("message %d has %d frames, expected 3" % (n_msgs, len(frames)))
            topic, seqb, payload = frames
            if not topic.startswith(args.topic.encode()):
                raise Malformed("topic %r does not match %r" % (topic, args.topic))
            if len(seqb) != 8:
                raise Malformed("seq frame has %d bytes, expected 8" % len(seqb))
            seq = int.from_bytes(seqb, "big")
            if expect is not None and seq != expect:
                sys.stderr.write("kv_subscriber: seq gap: expected %d, got %d\n" % (expect, seq))
                code = EXIT_GAP
                break
            expect = seq + 1
            ts, events = decode_batch(payload)
            for ev in events:
                rec = {"seq": seq, "ts": ts}
                rec.update(ev)
                out.write(json.dumps(rec) + "\n")
                n_events += 1
                if verifier:
                    verifier.feed(rec)
            out.flush()
    except Malformed as e:
        sys.stderr.write("kv_subscriber: malformed: %s\n" % e)
        code = EXIT_MALFORMED
    finally:
        if out is not sys.stdout:
            out.close()
        sock.close()
        ctx.term()
    sys.stderr.write("kv_subscriber: messages=%d events=%d\n" % (n_msgs, n_events))
    return code


def main(argv=None):
    ap = argparse.ArgumentParser(description="vLLM KV-cache event subscriber (JSON lines out)")
    ap.add_argument("--endpoint", help="PUB endpoint to connect to (or bind with --bind)")
    ap.add_argument("--bind", action="store_true",
                    help="bind the SUB socket (publisher connects: centralized mode)")
    ap.add_argument("--topic", default="", help="topic prefix filter (default: all)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--duration", type=float, help="stop after S seconds")
    g.add_argument("--until-idle", type=float, help="stop after S seconds without a message")
    ap.add_argument("--out", help="write JSON lines here (default stdout)")
    ap.add_argument("--expect-first-seq", type=int,
                    help="the first message must carry this seq (default: any)")
    ap.add_argument("--in", dest="infile", help="verify a JSON-lines file instead of subscribing")
    ap.add_argument("--verify-chain", nargs=2, metavar=("SEED", "BLOCK_SIZE"),
                    help="recompute BlockStored hashes with sha256_cbor")
    ap.add_argument("--salt", action="append", default=[],
                    help="candidate cache_salt for first blocks (repeatable)")
    args = ap.parse_args(argv)
    if not args.endpoint and not args.infile:
        ap.print_usage(sys.stderr)
        _die(EXIT_USAGE, "one of --endpoint or --in is required")
    if args.infile and not args.verify_chain:
        _die(EXIT_USAGE, "--in needs --verify-chain")

    verifier = None
    if args.verify_chain:
        _selfcheck()
        try:
            verifier = ChainVerifier(args.verify_chain[0], int(args.verify_chain[1]), args.salt)
        except ValueError:
            _die(EXIT_USAGE, "BLOCK_SIZE must be an integer")

    if args.infile:
        _run_file(args, verifier)
        code = EXIT_OK
    else:
        code = _run_live(args, verifier)
    if verifier:
        sys.stderr.write("kv_subscriber: %s\n" % verifier.summary())
        for p in verifier.problems:
            sys.stderr.write("kv_subscriber:   %s\n" % p)
        if verifier.mismatches and code == EXIT_OK:
            code = EXIT_MISMATCH
    return code


if __name__ == "__main__":
    sys.exit(main())
