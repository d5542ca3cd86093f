#!/usr/bin/env python3
"""redis-py against a Redis-compatible server (run by engine/tests/clients.rs).

Usage: redis_py_check.py --port PORT [--needs-families]

Exits non-zero with a message on the first wrong reply. `--needs-families` also checks
commands of other command families (pub/sub, counters, lists, hashes, sets, zsets).
Prints "redis-py check: ok" at the end on success.
"""

import argparse
import sys
import time

try:
    import redis
except ImportError as e:  # must fail loudly, never skip
    print(f"redis-py is not installed ({e}); run scripts/install-deps.sh", file=sys.stderr)
    sys.exit(3)


def expect(got, want, what):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}", file=sys.stderr)
        sys.exit(1)


def basics(port):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=3, socket_timeout=10)
    r.flushall()
    expect(r.ping(), True, "PING")
    expect(r.set("k", "v"), True, "SET")
    expect(r.get("k"), b"v", "GET")
    expect(r.get("missing"), None, "GET missing (RESP3 null)")
    expect(r.set("k", "w", nx=False), True, "SET again")
    expect(r.delete("k", "missing"), 1, "DEL")
    expect(r.echo("hi"), b"hi", "ECHO")

    # A pipeline (one round trip, replies in order), transactional=False: MULTI is not
    # needed for this check.
    p = r.pipeline(transaction=False)
    for i in range(200):
        p.set(f"p:{i}", i)
        p.get(f"p:{i}")
    replies = p.execute()
    expect(len(replies), 400, "pipeline length")
    for i in range(200):
        expect(replies[2 * i], True, f"pipeline SET {i}")
        expect(replies[2 * i + 1], str(i).encode(), f"pipeline GET {i}")
    expect(r.dbsize(), 200, "DBSIZE")

    # HELLO in RESP3 answers a map: redis-py turns it into a dict.
    hello = r.execute_command("HELLO", "3")
    if not isinstance(hello, dict):
        print(f"FAIL HELLO 3: not a map: {hello!r}", file=sys.stderr)
        sys.exit(1)
    expect(hello.get(b"server"), b"redis", "HELLO server")
    expect(hello.get(b"proto"), 3, "HELLO proto")
    expect(hello.get(b"version"), b"7.0.15", "HELLO version")
    expect(hello.get(b"modules"), [], "HELLO modules")

    # Errors come back as exceptions with Redis's text.
    try:
        r.execute_command("GET")
        print("FAIL GET without key did not raise", file=sys.stderr)
        sys.exit(1)
    except redis.ResponseError as e:
        expect(str(e), "wrong number of arguments for 'get' command", "arity error text")

    # decode_responses=True over RESP3.
    d = redis.Redis(host="127.0.0.1", port=port, protocol=3, decode_responses=True)
    d.set("s", "héllo")
    expect(d.get("s"), "héllo", "UTF-8 round trip")
    d.close()

    # RESP2 still works on the same server.
    r2 = redis.Redis(host="127.0.0.1", port=port, protocol=2)
    expect(r2.get("s"), "héllo".encode(), "RESP2 GET")
    r2.close()
    r.close()


def needs_families(port):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=3, socket_timeout=10)
    r.flushall()
    expect(r.incr("n"), 1, "INCR")
    expect(r.incrbyfloat("f", 1.5), 1.5, "INCRBYFLOAT")
    expect(r.rpush("l", "a", "b", "c"), 3, "RPUSH")
    expect(r.lrange("l", 0, -1), [b"a", b"b", b"c"], "LRANGE")
    expect(r.hset("h", mapping={"f1": "1", "f2": "2"}), 2, "HSET")
    expect(r.hgetall("h"), {b"f1": b"1", b"f2": b"2"}, "HGETALL (RESP3 map)")
    expect(r.sadd("s", "x", "y"), 2, "SADD")
    expect(r.smembers("s"), {b"x", b"y"}, "SMEMBERS (RESP3 set)")
    expect(r.zadd("z", {"m": 2.5}), 1, "ZADD")
    expect(r.zscore("z", "m"), 2.5, "ZSCORE (RESP3 double)")
    # redis-py returns pairs as tuples (RESP2) or lists (RESP3) depending on version.
    pairs = [tuple(x) for x in r.zrange("z", 0, -1, withscores=True)]
    expect(pairs, [(b"m", 2.5)], "ZRANGE WITHSCORES")
    expect(r.expire("l", 100), True, "EXPIRE")
    ttl = r.ttl("l")
    if not 0 < ttl <= 100:
        print(f"FAIL TTL: {ttl}", file=sys.stderr)
        sys.exit(1)

    # MULTI/EXEC through a transactional pipeline.
    p = r.pipeline(transaction=True)
    p.incr("n").get("n")
    expect(p.execute(), [2, b"2"], "MULTI/EXEC")

    # Pub/sub over RESP3 (push messages).
    ps = r.pubsub()
    ps.subscribe("news")
    ps.psubscribe("sport.*")
    deadline = time.time() + 5
    subs = 0
    while subs < 2 and time.time() < deadline:
        m = ps.get_message(timeout=1)
        if m and m["type"] in ("subscribe", "psubscribe"):
            subs += 1
    expect(subs, 2, "subscribe confirmations")
    pub = redis.Redis(host="127.0.0.1", port=port, protocol=3)
    expect(pub.publish("news", "hello"), 1, "PUBLISH news")
    expect(pub.publish("sport.golf", "birdie"), 1, "PUBLISH sport.golf")
    got = []
    deadline = time.time() + 5
    while len(got) < 2 and time.time() < deadline:
        m = ps.get_message(timeout=1)
        if m and m["type"] in ("message", "pmessage"):
            got.append((m["type"], m["channel"], m["data"]))
    expect(
        got,
        [("message", b"news", b"hello"), ("pmessage", b"sport.golf", b"birdie")],
        "pub/sub messages",
    )
    ps.close()
    pub.close()
    r.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--needs-families", action="store_true")
    a = ap.parse_args()
    basics(a.port)
    if a.needs_families:
        needs_families(a.port)
    print(f"redis-py check: ok (redis-py {redis.__version__})")


if __name__ == "__main__":
    main()
