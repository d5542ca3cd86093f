#!/usr/bin/env python3
"""Captures Redis 7.0's command metadata for the engine to embed.

Starts a private redis-server (7.0.x) on a free port, asks it `COMMAND INFO` and
`COMMAND DOCS` over RESP3, and writes the two replies byte for byte to
command_info.resp3 and command_docs.resp3 next to this script. The engine parses them
at first use (engine/src/cmd/command_meta.rs) and answers COMMAND INFO / DOCS / LIST
for its own commands from them, so the metadata is Redis's own.

Run: python3 engine/data/capture_commands.py   (redis-server must be on PATH)
"""
import os
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_reply(f):
    """Reads one RESP3 reply from file object f; returns its raw bytes."""
    line = f.readline()
    out = bytearray(line)
    t = line[:1]
    body = line[1:-2]
    if t in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return bytes(out)
    if t in (b"$", b"=", b"!"):
        n = int(body)
        if n >= 0:
            out += f.read(n + 2)
        return bytes(out)
    if t in (b"*", b"~", b">"):
        for _ in range(max(int(body), 0)):
            out += read_reply(f)
        return bytes(out)
    if t == b"%":
        for _ in range(2 * int(body)):
            out += read_reply(f)
        return bytes(out)
    raise ValueError("unexpected reply type %r" % line)


def command(sock, f, *args):
    req = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        req += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(req)
    return read_reply(f)


def main():
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="capture-commands-")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                sock = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.05)
        f = sock.makefile("rb")
        version = command(sock, f, "HELLO", "3")
        assert b"7.0." in version, "redis-server 7.0 expected"
        for name, args in (("info", ("COMMAND", "INFO")), ("docs", ("COMMAND", "DOCS"))):
            data = command(sock, f, *args)
            with open(os.path.join(HERE, "command_%s.resp3" % name), "wb") as out:
                out.write(data)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
