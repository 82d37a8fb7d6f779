#!/usr/bin/env python3
"""Summarise `wrk --latency` outputs of repeated runs.

    wrk_stats.py LABEL FILE...

Prints one line per run, then a line starting with "SUMMARY " holding the
medians across runs:

    SUMMARY sessions.create c=32: 27123 req/s (median of 3), p50 0.90 ms, p99 3.10 ms

and, if any run saw non-2xx/3xx responses or socket errors, a line starting
with "WARNING ". Exit code 1 if a file could not be parsed.
"""
import re
import statistics
import sys

# wrk prints times with the units of format_time_us: us, ms, s, m, h.
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text):
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError("unrecognised wrk time %r" % text)
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse(text):
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)\s*$", text, re.M)
    if not rps:
        raise ValueError("no 'Requests/sec:' line (did wrk fail?)")
    dist = {}
    for pct, value in re.findall(r"^\s+([0-9]+(?:\.[0-9]+)?)%\s+(\S+)\s*$", text, re.M):
        dist[float(pct)] = to_ms(value)
    if 50.0 not in dist or 99.0 not in dist:
        raise ValueError("no latency distribution (was wrk run with --latency?)")
    total = re.search(r"^\s+([0-9]+) requests in ", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", text)
    sock = re.search(r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)", text)
    return {
        "rps": float(rps.group(1)),
        "p50": dist[50.0],
        "p99": dist[99.0],
        "requests": int(total.group(1)) if total else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "sockerr": sum(int(g) for g in sock.groups()) if sock else 0,
    }


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    label, files = argv[1], argv[2:]
    runs = []
    for i, path in enumerate(files, 1):
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        try:
            r = parse(text)
        except ValueError as exc:
            print("ERROR: %s: %s" % (path, exc), file=sys.stderr)
            print(text[-2000:], file=sys.stderr)
            return 1
        runs.append(r)
        print("  run %d: %.0f req/s, p50 %.3f ms, p99 %.3f ms, %d requests, non-2xx %d, socket errors %d"
              % (i, r["rps"], r["p50"], r["p99"], r["requests"], r["non2xx"], r["sockerr"]))
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    print("SUMMARY %s: %.0f req/s (median of %d), p50 %s ms, p99 %s ms"
          % (label, med("rps"), len(runs), fmt_ms(med("p50")), fmt_ms(med("p99"))))
    non2xx = sum(r["non2xx"] for r in runs)
    sockerr = sum(r["sockerr"] for r in runs)
    if non2xx or sockerr:
        print("WARNING %s: %d non-2xx/3xx responses and %d socket errors over %d runs"
              % (label, non2xx, sockerr, len(runs)))
    return 0


def fmt_ms(v):
    # 2 significant decimals for sub-ms values, 1 decimal above.
    return "%.2f" % v if v < 10 else "%.1f" % v


if __name__ == "__main__":
    sys.exit(main(sys.argv))
