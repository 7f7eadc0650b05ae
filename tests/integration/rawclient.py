#!/usr/bin/env python3
"""rawclient.py - bad and hostile clients of memd, speaking msgpack by hand (no msgpack module needed).

usage: rawclient.py SOCKET SCENARIO

Each scenario prints one "ok ..." line and exits 0 when memd behaved (closed
the bad connection, answered, refused), or prints why and exits 1.  The
caller checks afterwards that memd is alive and still answers others.

Scenarios:
  garbage      bytes that are not msgpack (0xc1)
  truncated    half a HELLO, then close; and half a HELLO left hanging while
               a second connection says HELLO and gets HELLO_OK
  oversized    a str header announcing 100 MB: closed on the header alone
  deep         arrays nested 20 deep inside a message
  unknown      a message of type 99 after HELLO
  before-hello a STATUS_REQUEST before HELLO: ERROR EBADMSG, closed
  claim-pid    an agent HELLO claiming pid 1: memd attaches our real pid
  no-read      a control client pipelining 200,000 STATUS_REQUESTs and never
               reading: memd closes it (bounded output)
  storm        500 connections (agents and controls) opened and dropped, 5 times
"""
import os
import socket
import struct
import sys
import time


def pack(o):
    if o is None:
        return b"\xc0"
    if o is True:
        return b"\xc3"
    if o is False:
        return b"\xc2"
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        if 0 <= o < 1 << 32:
            return b"\xce" + struct.pack(">I", o)
        return b"\xcf" + struct.pack(">Q", o)
    if isinstance(o, str):
        b = o.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xdb" + struct.pack(">I", len(b)) + b
    if isinstance(o, (list, tuple)):
        return b"\xdd" + struct.pack(">I", len(o)) + b"".join(pack(x) for x in o)
    if isinstance(o, dict):
        return b"\xdf" + struct.pack(">I", len(o)) + b"".join(pack(k) + pack(v) for k, v in o.items())
    raise TypeError(o)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def hello(role, pid=None, id=1):
    m = {"t": 1, "id": id, "version": 1, "role": role}
    if pid is not None:
        m["pid"] = pid
    return pack(m)


def closed_within(s, seconds):
    """True when memd closes s (EOF or reset) within seconds, reading what it sends."""
    s.settimeout(seconds)
    end = time.time() + seconds
    try:
        while time.time() < end:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def got_reply_type(s, seconds=2):
    """The t of the first message memd sends (parsed from fixmap/map32 headers enough for t first or anywhere)."""
    s.settimeout(seconds)
    data = b""
    end = time.time() + seconds
    while time.time() < end and len(data) < 8:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    # memd packs "t" first: map header, then a1 74 ("t"), then the type.
    i = data.find(b"\xa1t")
    return data[i + 2] if i >= 0 and i + 2 < len(data) else None


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def main():
    path, scenario = sys.argv[1], sys.argv[2]
    if scenario == "garbage":
        s = connect(path)
        s.sendall(b"\xc1 not msgpack \xff" * 16)
        closed_within(s, 2) or fail("garbage: connection not closed")
    elif scenario == "truncated":
        h = hello(2)
        s = connect(path)
        s.sendall(h[: len(h) // 2])
        s.close()
        hang = connect(path)
        hang.sendall(h[: len(h) // 2])
        other = connect(path)
        other.sendall(h)
        if got_reply_type(other) != 2:
            fail("truncated: a second client got no HELLO_OK while a half message hangs")
        hang.close()
        other.close()
    elif scenario == "oversized":
        s = connect(path)
        s.sendall(hello(2))
        got_reply_type(s)
        s.sendall(b"\x82\xa1t\x30\xa2id\xdb" + struct.pack(">I", 100 << 20) + b"x" * 1024)
        closed_within(s, 2) or fail("oversized: a 100 MB string header did not close the connection")
    elif scenario == "deep":
        s = connect(path)
        s.sendall(hello(2))
        got_reply_type(s)
        deep = [1]
        for _ in range(20):
            deep = [deep]
        s.sendall(pack({"t": 48, "id": 2, "x": deep}))
        closed_within(s, 2) or fail("deep: 20 nested arrays did not close the connection")
    elif scenario == "unknown":
        s = connect(path)
        s.sendall(hello(2))
        got_reply_type(s)
        s.sendall(pack({"t": 99, "id": 2}))
        closed_within(s, 2) or fail("unknown: type 99 did not close the connection")
    elif scenario == "before-hello":
        s = connect(path)
        s.sendall(pack({"t": 48, "id": 1}))
        if got_reply_type(s) != 3:
            fail("before-hello: no ERROR reply")
        closed_within(s, 2) or fail("before-hello: connection not closed")
    elif scenario == "claim-pid":
        s = connect(path)
        s.sendall(hello(1, pid=1))
        if got_reply_type(s) != 2:
            fail("claim-pid: no HELLO_OK")
        print("attached-as", os.getpid(), flush=True)
        # Stay attached until the caller has looked (it closes our stdin).
        sys.stdin.read()
        s.close()
    elif scenario == "no-read":
        s = connect(path)
        s.sendall(hello(2))
        got_reply_type(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        req = b"".join(pack({"t": 48, "id": i + 2}) for i in range(200000))
        s.settimeout(30)
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass
        # Never read: memd must give up on us rather than buffer forever.
        s.settimeout(1)
        end = time.time() + 30
        closed = False
        while time.time() < end and not closed:
            try:
                s.send(pack({"t": 48, "id": 1}))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            except socket.timeout:
                pass
            time.sleep(0.05)
        closed or fail("no-read: memd kept a client that never reads for 30 s")
    elif scenario == "storm":
        for _ in range(5):
            conns = []
            for i in range(500):
                c = connect(path)
                if i % 3 == 0:
                    c.sendall(hello(1))
                elif i % 3 == 1:
                    c.sendall(hello(2) + pack({"t": 48, "id": 2}))
                conns.append(c)
            for c in conns:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
    else:
        print("unknown scenario", scenario)
        sys.exit(2)
    print("ok", scenario)


main()
