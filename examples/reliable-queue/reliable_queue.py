#!/usr/bin/env python3
"""The seed's reliable queue on streams, with redis-py.

Producers XADD jobs to a stream; workers share them through a consumer group
(XREADGROUP ... >) and acknowledge each job after doing it (XACK). One worker
crashes after taking jobs and before finishing them: its jobs stay in the group's
pending entries list (PEL), where another worker finds them once they have been idle
long enough (XAUTOCLAIM) and does them. Nothing is lost: every job produced is done,
and the PEL ends empty.

Usage: reliable_queue.py --port PORT [--jobs N] [--producers P] [--min-idle-ms MS]
                         [--protocol 2|3]

Works against coherent's engine and against Redis 7. Exits non-zero with a message
if a job is lost or left pending; prints "reliable queue: ok ..." on success.
"""

import argparse
import sys
import threading
import time

try:
    import redis
except ImportError as e:  # must fail loudly, never skip
    print(f"redis-py is not installed ({e}); run scripts/install-deps.sh", file=sys.stderr)
    sys.exit(3)

STREAM = "jobs"
GROUP = "workers"


def fail(msg):
    print(f"FAIL {msg}", file=sys.stderr)
    sys.exit(1)


PROTOCOL = 2


def client(port):
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=10,
        decode_responses=True,
        protocol=PROTOCOL,
    )


def produce(port, first, count):
    """One producer: XADD `count` jobs numbered from `first`, with auto IDs."""
    r = client(port)
    for n in range(first, first + count):
        r.xadd(STREAM, {"job": str(n), "payload": f"resize image {n}"})


def take(r, consumer, count, block_ms):
    """New jobs for `consumer`: [(entry id, job number)]."""
    got = r.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count, block=block_ms)
    out = []
    # RESP2 replies [[stream, entries]], RESP3 a map {stream: entries}.
    streams = got.items() if isinstance(got, dict) else (got or [])
    for _stream, entries in streams:
        # redis-py nests a RESP3 map's entries one level deeper.
        if entries and isinstance(entries[0], list) and isinstance(entries[0][0], (list, tuple)):
            entries = entries[0]
        for entry_id, fields in entries:
            out.append((entry_id, int(fields["job"])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--min-idle-ms", type=int, default=200)
    ap.add_argument("--protocol", type=int, choices=(2, 3), default=2)
    args = ap.parse_args()
    global PROTOCOL
    PROTOCOL = args.protocol

    r = client(args.port)
    r.delete(STREAM)
    # The group first, at $ of an empty stream made for it: it sees every job.
    r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)

    per = args.jobs // args.producers
    threads = [
        threading.Thread(target=produce, args=(args.port, p * per, per))
        for p in range(args.producers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = per * args.producers
    if r.xlen(STREAM) != total:
        fail(f"XLEN {r.xlen(STREAM)}, produced {total}")

    done = {}  # job number -> the worker that did it

    # Worker "crashy" takes a batch, finishes half of it, and dies before the rest.
    crashy = client(args.port)
    batch = take(crashy, "crashy", 40, 1000)
    if len(batch) != 40:
        fail(f"crashy took {len(batch)} jobs, wanted 40")
    for entry_id, job in batch[:20]:
        done[job] = "crashy"
        crashy.xack(STREAM, GROUP, entry_id)
    crashy.close()  # the crash: 20 jobs taken and never acknowledged
    lost_if_no_claim = {job for _, job in batch[20:]}

    summary = r.xpending(STREAM, GROUP)
    if summary["pending"] != 20 or summary["consumers"] != [{"name": "crashy", "pending": 20}]:
        fail(f"after the crash, XPENDING says {summary}")

    # Worker "steady" does new jobs and, now and then, claims jobs idle too long.
    steady = client(args.port)
    reclaimed = 0
    deadline = time.monotonic() + 30
    while len(done) < total:
        if time.monotonic() > deadline:
            fail(f"only {len(done)} of {total} jobs done in 30 s")
        for entry_id, job in take(steady, "steady", 50, 100):
            done.setdefault(job, "steady")
            steady.xack(STREAM, GROUP, entry_id)
        cursor = "0-0"
        while True:
            cursor, claimed, deleted = steady.xautoclaim(
                STREAM, GROUP, "steady", args.min_idle_ms, start_id=cursor, count=25
            )
            if deleted:
                fail(f"jobs deleted from the stream while pending: {deleted}")
            for entry_id, fields in claimed:
                job = int(fields["job"])
                if job in done:
                    fail(f"job {job} claimed although it was acknowledged")
                done[job] = "steady (claimed)"
                reclaimed += 1
                steady.xack(STREAM, GROUP, entry_id)
            if cursor == "0-0":
                break
        if len(done) < total:
            time.sleep(0.05)

    missing = set(range(total)) - set(done)
    if missing:
        fail(f"lost jobs: {sorted(missing)[:10]}")
    if reclaimed != len(lost_if_no_claim):
        fail(f"{reclaimed} jobs reclaimed, the crash left {len(lost_if_no_claim)}")
    if {j for j, w in done.items() if w == "steady (claimed)"} != lost_if_no_claim:
        fail("the reclaimed jobs are not the ones the crash left")
    summary = r.xpending(STREAM, GROUP)
    if summary["pending"] != 0:
        fail(f"jobs still pending at the end: {summary}")
    groups = r.xinfo_groups(STREAM)
    if len(groups) != 1 or groups[0]["lag"] != 0 or groups[0]["entries-read"] != total:
        fail(f"XINFO GROUPS at the end: {groups}")
    consumers = {c["name"]: c["pending"] for c in r.xinfo_consumers(STREAM, GROUP)}
    if consumers != {"crashy": 0, "steady": 0}:
        fail(f"XINFO CONSUMERS at the end: {consumers}")
    print(
        f"reliable queue: ok, {total} jobs from {args.producers} producers, "
        f"{reclaimed} reclaimed from the crashed worker by XAUTOCLAIM, none lost"
    )


if __name__ == "__main__":
    main()
