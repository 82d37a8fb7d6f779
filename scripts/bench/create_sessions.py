#!/usr/bin/env python3
"""Create exactly N sessions with POST /api/sessions and check every answer.

Used by scripts/bench-sessions.sh for the idle-memory measurement. Splits the
work over several processes, each with one HTTP/1.1 keep-alive connection
(python's GIL makes threads pointless here). Every response must be 200; the
script prints one line

    created=N non200=K errors=E seconds=S rate=R

and exits 0 only if all N requests were answered 200. A request whose
connection failed is counted under errors (the server may or may not have
created that session), so any error also fails the run.
"""
import argparse
import http.client
import json
import multiprocessing as mp
import socket
import sys
import time


class Connection(http.client.HTTPConnection):
    """Keep-alive connection with TCP_NODELAY (no Nagle/delayed-ACK stalls)."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def worker(job):
    host, port, token, count, timeout = job
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    ok = 0
    bad = {}
    errors = 0
    sample_ok = None
    sample_bad = None
    conn = Connection(host, port, timeout=timeout)
    for _ in range(count):
        try:
            conn.request("POST", "/api/sessions", body=b"{}", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            errors += 1
            if sample_bad is None:
                sample_bad = "connection error: %r" % (exc,)
            conn.close()
            if errors > 20:
                break  # server is gone; don't spin
            conn = Connection(host, port, timeout=timeout)
            continue
        if resp.status == 200:
            ok += 1
            if sample_ok is None:
                sample_ok = body
        else:
            bad[resp.status] = bad.get(resp.status, 0) + 1
            if sample_bad is None:
                sample_bad = "HTTP %d: %s" % (resp.status, body[:300].decode("utf-8", "replace"))
        if resp.will_close:
            conn.close()
            conn = Connection(host, port, timeout=timeout)
    conn.close()
    return ok, bad, errors, sample_ok, sample_bad


def check_body(body):
    """Warn (not fail) if a 200 body lacks the documented fields."""
    try:
        doc = json.loads(body)
    except ValueError:
        return "200 response is not JSON: %r" % (body[:200],)
    missing = [k for k in ("session_id", "user_id", "created_at", "active") if k not in doc]
    if missing:
        return "200 response lacks %s: %r" % (", ".join(missing), body[:200])
    if doc.get("active") is not True:
        return "200 response has active=%r" % (doc.get("active"),)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    workers = max(1, min(args.workers, args.count))
    share, extra = divmod(args.count, workers)
    jobs = [(args.host, args.port, args.token, share + (1 if i < extra else 0), args.timeout)
            for i in range(workers)]
    start = time.monotonic()
    with mp.get_context("fork").Pool(workers) as pool:
        results = pool.map(worker, jobs)
    elapsed = time.monotonic() - start

    ok = sum(r[0] for r in results)
    bad = {}
    for r in results:
        for status, n in r[1].items():
            bad[status] = bad.get(status, 0) + n
    errors = sum(r[2] for r in results)
    sample_ok = next((r[3] for r in results if r[3] is not None), None)
    sample_bad = next((r[4] for r in results if r[4] is not None), None)

    if sample_ok is not None:
        warning = check_body(sample_ok)
        if warning:
            print("WARNING: " + warning, file=sys.stderr)
    if sample_bad is not None:
        print("first failure: " + sample_bad, file=sys.stderr)
    non200 = sum(bad.values())
    detail = ",".join("%d:%d" % kv for kv in sorted(bad.items())) or "-"
    print("created=%d non200=%d statuses=%s errors=%d seconds=%.2f rate=%.0f"
          % (ok, non200, detail, errors, elapsed, ok / elapsed if elapsed > 0 else 0.0))
    return 0 if ok == args.count and non200 == 0 and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
