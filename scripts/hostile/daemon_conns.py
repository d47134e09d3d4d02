#!/usr/bin/env python3
"""Hostile clients against a running `mta-sts daemon` on loopback (issue 12, items 3 and 4).

Opens N connections of one kind, then times ten socketmap queries from fresh connections
while they are held, and prints the daemon's RSS before, during and after.

    mta-sts daemon --config daemon.toml &        # socketmap 127.0.0.1:18461, http :18462
    scripts/hostile/daemon_conns.py PID http 19000    # idle HTTP API connections
    scripts/hostile/daemon_conns.py PID empty 6000    # socketmap connections sending `0:,`
    scripts/hostile/daemon_conns.py PID idle 6000     # idle socketmap connections

The query is `postfix [192.0.2.1]`, an address literal the daemon answers without any
network lookup, so the figure is the server's own responsiveness. Loopback only.
"""
import resource
import socket
import sys
import time

SOCKETMAP = ("127.0.0.1", 18461)
HTTP = ("127.0.0.1", 18462)


def rss(pid):
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return f"VmRSS {fields['VmRSS'].strip()}, VmHWM {fields['VmHWM'].strip()}"


def query():
    start = time.monotonic()
    with socket.create_connection(SOCKETMAP, timeout=30) as s:
        request = b"postfix [192.0.2.1]"
        s.sendall(b"%d:%s," % (len(request), request))
        reply = s.recv(1000)
    return (time.monotonic() - start) * 1000, reply


def open_one(kind):
    if kind == "http":
        s = socket.create_connection(HTTP, timeout=5)
    else:
        s = socket.create_connection(SOCKETMAP, timeout=5)
        if kind == "empty":
            s.sendall(b"0:,")
    s.setblocking(False)
    return s


def main():
    pid, kind, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_NOFILE, (count + 100, count + 100))
    print("baseline:", rss(pid), "query %.1f ms %r" % query(), flush=True)
    held = []
    for i in range(count):
        try:
            held.append(open_one(kind))
        except OSError as e:
            print(f"connection {i}: {e} (the server's cap holds the rest in the backlog)")
            break
    print(f"holding {len(held)} {kind} connections:", rss(pid), flush=True)
    times = [query()[0] for _ in range(10) if time.sleep(0.2) is None]
    print("queries meanwhile (ms):", " ".join("%.1f" % t for t in times),
          "worst %.1f" % max(times), "|", rss(pid), flush=True)
    for s in held:
        s.close()
    time.sleep(3)
    print("after:", rss(pid), "query %.1f ms" % query()[0], flush=True)


if __name__ == "__main__":
    main()
