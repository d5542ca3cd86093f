#!/usr/bin/env python3
"""redis-py's scripting helpers against a Redis-compatible server (run by
engine/tests/scripting.rs): `Lock` (its acquire/extend/release Lua scripts through
EVALSHA, with the NOSCRIPT fallback to EVAL), `register_script`, and scripts in a
pipeline. Usage: redis_py_scripting.py --port PORT. Prints "redis-py scripting: ok".
"""

import argparse
import sys
import threading

try:
    import redis
    from redis.exceptions import LockError, NoScriptError, ResponseError
except ImportError as e:  # must fail loudly, never skip
    print(f"redis-py is not installed ({e}); run scripts/install-deps.sh", file=sys.stderr)
    sys.exit(3)


def expect(got, want, what):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}", file=sys.stderr)
        sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    port = p.parse_args().port
    for protocol in (2, 3):
        r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10)
        r.flushall()
        r.script_flush()

        # register_script: EVALSHA first, EVAL after NOSCRIPT, cached after.
        incr_by = r.register_script(
            "local v = redis.call('incrby', KEYS[1], ARGV[1]) return v"
        )
        expect(incr_by(keys=["n"], args=[5]), 5, "register_script first call")
        expect(incr_by(keys=["n"], args=[2]), 7, "register_script cached")
        expect(r.script_exists(incr_by.sha), [True], "SCRIPT EXISTS")
        with r.pipeline() as pipe:
            incr_by(keys=["n"], args=[1], client=pipe)
            incr_by(keys=["n"], args=[1], client=pipe)
            expect(pipe.execute(), [8, 9], "scripts in a MULTI pipeline")
        try:
            r.evalsha("f" * 40, 0)
            print("FAIL EVALSHA of an unknown script did not raise", file=sys.stderr)
            sys.exit(1)
        except NoScriptError:
            pass
        try:
            r.eval("return redis.call('incr', KEYS[1])", 1, "s") and r.set("s", "x")
            r.eval("return redis.call('incr', KEYS[1])", 1, "s")
            print("FAIL INCR of a string inside a script did not raise", file=sys.stderr)
            sys.exit(1)
        except ResponseError as e:
            expect("value is not an integer" in str(e), True, "script error text")

        # Lock: mutual exclusion, extend, release, and the token check on release.
        lock = r.lock("resource", timeout=5, blocking_timeout=0.5)
        expect(lock.acquire(), True, "Lock acquire")
        other = r.lock("resource", timeout=5, blocking_timeout=0.2)
        expect(other.acquire(), False, "second Lock acquire while held")
        expect(lock.locked(), True, "locked()")
        expect(lock.owned(), True, "owned()")
        expect(lock.extend(10), True, "extend")
        expect(r.pttl("resource") > 5000, True, "extend moved the TTL")
        expect(lock.reacquire(), True, "reacquire")
        lock.release()
        expect(lock.locked(), False, "released")
        try:
            lock.release()
            print("FAIL releasing an unheld Lock did not raise", file=sys.stderr)
            sys.exit(1)
        except LockError:
            pass
        with r.lock("resource", timeout=5):
            expect(r.exists("resource"), 1, "Lock as a context manager")

        # Contended Lock: several threads increment under the lock; none is lost.
        r.set("counter", 0)

        def worker():
            c = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10)
            for _ in range(25):
                with c.lock("mutex", timeout=5, sleep=0.001, blocking_timeout=10):
                    v = int(c.get("counter"))
                    c.set("counter", v + 1)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expect(int(r.get("counter")), 100, "increments under a contended Lock")
    print("redis-py scripting: ok")


if __name__ == "__main__":
    main()
