#!/usr/bin/env python3
"""Parallel large gzip TLS-RPT reports against a running `mta-sts serve` (issue 12, item 1).

Each report has 110,000 failure details (about 15 MB of JSON, 630 KB gzipped) for the
policy domain `a.test`, which the serve.toml must serve:

    scripts/hostile/intake_bomb.py PORT PARALLEL [ROUNDS]

Prints the answers per round (201, or 503 with Retry-After once the intake is at its cap)
and, with the server's PID in $SERVE_PID, its RSS after each round. Loopback only; TLS is
not verified (the point is the server's memory, not its certificate).
"""
import gzip
import http.client
import json
import os
import random
import socket
import ssl
import sys
import threading
import time
from collections import Counter


def report(i, n=110_000):
    r = random.Random(i)
    details = [
        {
            "result-type": "certificate-expired",
            "sending-mta-ip": "192.0.2.%d" % r.randrange(256),
            "receiving-mx-hostname": "mx%d.a.test" % r.randrange(10),
            "failed-session-count": r.randrange(100),
        }
        for _ in range(n)
    ]
    return json.dumps({
        "organization-name": "Bomb",
        "date-range": {"start-datetime": "2024-01-01T00:00:00Z",
                       "end-datetime": "2024-01-02T00:00:00Z"},
        "contact-info": "x@b.test",
        "report-id": "bomb-%d-%f" % (i, time.time()),
        "policies": [{
            "policy": {"policy-type": "sts", "policy-domain": "a.test"},
            "summary": {"total-successful-session-count": 1,
                        "total-failure-session-count": n},
            "failure-details": details,
        }],
    }).encode()


def post(port, body, answers):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=300)
        # SNI must name a served host: serve refuses handshakes for names it does not serve.
        raw = socket.create_connection(("127.0.0.1", port), timeout=300)
        conn.sock = context.wrap_socket(raw, server_hostname="mta-sts.a.test")
        conn.request("POST", "/tlsrpt", body=body, headers={
            "Host": "mta-sts.a.test", "Content-Type": "application/tlsrpt+gzip"})
        response = conn.getresponse()
        response.read()
        answers.append((response.status, response.getheader("Retry-After")))
    except OSError as e:
        answers.append(("error", str(e)[:60]))


def rss():
    pid = os.environ.get("SERVE_PID")
    if not pid:
        return ""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return f"VmRSS {fields['VmRSS'].strip()}, VmHWM {fields['VmHWM'].strip()}"


def main():
    port, parallel = int(sys.argv[1]), int(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    for round_ in range(rounds):
        bodies = [gzip.compress(report(round_ * parallel + i)) for i in range(parallel)]
        answers = []
        threads = [threading.Thread(target=post, args=(port, b, answers)) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(2)
        print(f"round {round_ + 1}: {dict(Counter(answers))} {rss()}", flush=True)


if __name__ == "__main__":
    main()
