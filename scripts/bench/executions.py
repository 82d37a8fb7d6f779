#!/usr/bin/env python3
"""HTTP helpers of scripts/bench-executions.sh (stdlib only).

    executions.py setup --port P --token T --sessions N [--workflow W]
        Creates N sessions (POST /api/sessions) and in each the benchmark
        workflow W (route_and_merge, the default, or python_double;
        POST /api/workflows?session_id=ID); prints
        "sid1:wid1,sid2:wid2,..." (the KAILASH_BENCH_TARGETS value).
    executions.py inputs [--workflow W]
        Prints the JSON `inputs` each execution of W is started with (the
        KAILASH_BENCH_INPUTS value).
    executions.py latency --port P --token T --targets SPEC [--sample K]
        Prints "P50_MS P99_MS" of completed_at - created_at (server clock) of
        the K most recent executions of each session in SPEC.
    executions.py executed --port P --token T
        Prints agent_ui.workflows_executed and agent_ui.active_executions.
    executions.py wait-idle --port P --token T [--timeout 60] [--interval 0.05]
        Polls GET /api/stats until agent_ui.active_executions == 0; prints
        the wall-clock time (time.time()) at which that was seen and
        agent_ui.workflows_executed then. Exit 1 on timeout.
    executions.py cpu-ticks --pid P [--postmaster PM]
        Prints "MACHINE GATEWAY POSTGRES": CPU clock ticks (user + system) of
        the whole machine (every core, /proc/stat), of process P (the
        gateway, all its threads) and of the PostgreSQL instance whose
        postmaster is PM (it and its children: backends, WAL writer,
        checkpointer, autovacuum; 0 without --postmaster).
    executions.py run-line --label L --run R --start T0 --end T1
                           --before B --after A --wrk FILE
                           --cpu-before TICKS --cpu-after TICKS
        Prints the per-run result line (with the CPU time per completed
        execution, from the cpu-ticks readings before and after the run),
        then a "DATA " line (JSON) for `summary` and `compare`.
    executions.py summary --label L FILE
        FILE holds the DATA lines of the counted runs; prints the median lines.
    executions.py compare MEMORY_FILE POSTGRES_FILE
        Prints the PostgreSQL pass's median throughput as a share of the
        in-memory one, and the shares their CPU per execution allows.

Exit code 1 on any HTTP or parse error (message on stderr).
"""
import argparse
import datetime
import http.client
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wrk_stats import fmt_ms, parse  # noqa: E402

ROUTE_AND_MERGE = {
    "name": "route_and_merge",
    "nodes": [
        {"id": "route", "type": "SwitchNode",
         "config": {"condition_field": "tier", "operator": "==", "value": "gold"}},
        {"id": "merge", "type": "MergeNode", "config": {"merge_type": "concat"}},
    ],
    "connections": [
        {"from_node": "route", "from_output": "true_output",
         "to_node": "merge", "to_input": "data1"},
    ],
}


PYTHON_DOUBLE = {
    "name": "python_double",
    "nodes": [{"id": "double", "type": "PythonCodeNode", "config": {"code": "result = {'n': x * 2}"}}],
}

# name -> (workflow, inputs of each execution)
WORKFLOWS = {
    "route_and_merge": (ROUTE_AND_MERGE, {"route": {"input_data": {"tier": "gold", "n": 1}}}),
    "python_double": (PYTHON_DOUBLE, {"x": 21}),
}


class Client:
    def __init__(self, port, token=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = "Bearer " + token

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        try:
            self.conn.request(method, path, body=data, headers=self.headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException):
            # one reconnect (keep-alive connection closed by the server)
            self.conn.close()
            self.conn.request(method, path, body=data, headers=self.headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        if resp.status != 200:
            raise RuntimeError("%s %s -> %d: %s" % (method, path, resp.status, raw[:300].decode(errors="replace")))
        return json.loads(raw)


def agent_ui(client):
    ui = client.call("GET", "/api/stats")["agent_ui"]
    return int(ui["workflows_executed"]), int(ui["active_executions"])


def cmd_setup(a):
    c = Client(a.port, a.token)
    targets = []
    for _ in range(a.sessions):
        sid = c.call("POST", "/api/sessions", {})["session_id"]
        wid = c.call("POST", "/api/workflows?session_id=%s" % sid, WORKFLOWS[a.workflow][0])["workflow_id"]
        if ":" in sid + wid or "," in sid + wid:
            raise RuntimeError("unexpected id %r / %r" % (sid, wid))
        targets.append("%s:%s" % (sid, wid))
    print(",".join(targets))


def cmd_inputs(a):
    print(json.dumps(WORKFLOWS[a.workflow][1]))


def parse_time(text):
    # RFC 3339 with nanoseconds and Z: keep microseconds for datetime.
    head, _, frac = text.rstrip("Z").partition(".")
    stamp = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S")
    return stamp.timestamp() + float("0." + (frac or "0"))


def cmd_latency(a):
    c = Client(a.port, a.token)
    samples = []
    for pair in a.targets.split(","):
        sid = pair.split(":")[0]
        listed = c.call("GET", "/api/executions?session_id=%s" % sid)["executions"]
        listed.sort(key=lambda e: e["created_at"], reverse=True)
        for e in listed[: a.sample]:
            run = c.call("GET", "/api/executions/%s?session_id=%s" % (e["execution_id"], sid))
            if run["status"] == "completed" and run["completed_at"]:
                samples.append((parse_time(run["completed_at"]) - parse_time(run["created_at"])) * 1000)
    if not samples:
        raise RuntimeError("no completed executions to sample")
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
    print("%.2f %.2f" % (pick(0.5), pick(0.99)))


def cmd_executed(a):
    executed, active = agent_ui(Client(a.port, a.token))
    print(executed, active)


def cmd_events_written(a):
    store = Client(a.port, a.token).call("GET", "/api/stats")["store"]
    print(int(store["events_written"]))


def cmd_wait_idle(a):
    c = Client(a.port, a.token)
    deadline = time.monotonic() + a.timeout
    while True:
        executed, active = agent_ui(c)
        now = time.time()
        if active == 0:
            print("%.6f %d" % (now, executed))
            return 0
        if time.monotonic() >= deadline:
            print("still %d active executions after %.0f s" % (active, a.timeout), file=sys.stderr)
            return 1
        time.sleep(a.interval)


def process_stat(pid):
    """(parent pid, utime + stime) of a process, all its threads (/proc/PID/stat fields 4, 14, 15)."""
    with open("/proc/%s/stat" % pid) as fh:
        fields = fh.read().rpartition(")")[2].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def postgres_ticks(postmaster):
    total = process_stat(postmaster)[1]
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent, ticks = process_stat(entry)
        except (OSError, IndexError, ValueError):
            continue  # the process ended while it was read
        if parent == postmaster:
            total += ticks
    return total


def cmd_cpu_ticks(a):
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    machine = user + nice + system + irq + softirq + steal
    print(machine, process_stat(a.pid)[1], postgres_ticks(a.postmaster) if a.postmaster else 0)


def cpu_per_execution(before, after, completed):
    """Microseconds of CPU per completed execution: machine, gateway, PostgreSQL."""
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    deltas = [int(y) - int(x) for x, y in zip(before.split(), after.split())]
    return [d * tick_us / max(completed, 1) for d in deltas]


def cpu_text(machine, gateway, postgres):
    return ("CPU per execution %.0f us: gateway %.0f, PostgreSQL %.0f, rest %.0f "
            "(wrk, poller, kernel)" % (machine, gateway, postgres, machine - gateway - postgres))


def cmd_run_line(a):
    with open(a.wrk, encoding="utf-8", errors="replace") as fh:
        w = parse(fh.read())
    completed = a.after - a.before
    secs = a.end - a.start
    rate = completed / secs if secs > 0 else 0.0
    started = w["requests"] - w["non2xx"]
    exec_latency = ""
    if a.exec_latency:
        exec_p50, exec_p99 = (float(v) for v in a.exec_latency.split())
        exec_latency = "; execution latency p50 %.2f ms / p99 %.2f ms (created->completed)" % (exec_p50, exec_p99)
    cpu_us = cpu_per_execution(a.cpu_before, a.cpu_after, completed)
    print("%s run %d: %.0f completed/s (%d started by wrk, %d completed, wrk non-2xx %d, "
          "start latency p50 %s ms / p99 %s ms from wrk; %.2f s start->idle, wrk socket errors %d%s; %s)"
          % (a.label, a.run, rate, started, completed, w["non2xx"], fmt_ms(w["p50"]), fmt_ms(w["p99"]),
             secs, w["sockerr"], exec_latency, cpu_text(*cpu_us)))
    data = {"rate": rate, "started": started, "completed": completed, "non2xx": w["non2xx"],
            "sockerr": w["sockerr"], "p50": w["p50"], "p99": w["p99"], "wrk_rps": w["rps"]}
    if a.exec_latency:
        data.update(exec_p50=exec_p50, exec_p99=exec_p99)
    data.update(cpu_machine=cpu_us[0], cpu_gateway=cpu_us[1], cpu_postgres=cpu_us[2])
    print("DATA " + json.dumps(data))


def read_runs(path):
    """The DATA records run-line printed, from a results file."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line[5:]) for line in fh if line.startswith("DATA ")]


def median_of(runs, key):
    return statistics.median(r[key] for r in runs) if runs else 0.0


def cmd_summary(a):
    runs = read_runs(a.file)
    if not runs:
        print("no runs recorded", file=sys.stderr)
        return 1
    med = lambda key: median_of(runs, key)  # noqa: E731
    print("%s: %.0f completed/s (median of %d runs; min %.0f, max %.0f), wrk start rate %.0f req/s, "
          "start latency p50 %s ms / p99 %s ms; totals %d started, %d completed, wrk non-2xx %d, "
          "socket errors %d"
          % (a.label, med("rate"), len(runs), min(r["rate"] for r in runs), max(r["rate"] for r in runs),
             med("wrk_rps"), fmt_ms(med("p50")), fmt_ms(med("p99")),
             sum(r["started"] for r in runs), sum(r["completed"] for r in runs),
             sum(r["non2xx"] for r in runs), sum(r["sockerr"] for r in runs)))
    if all("exec_p50" in r for r in runs):
        print("%s: execution latency (created->completed, sampled) p50 %.2f ms / p99 %.2f ms (medians)"
              % (a.label, med("exec_p50"), med("exec_p99")))
    print("%s: %s (medians)"
          % (a.label, cpu_text(med("cpu_machine"), med("cpu_gateway"), med("cpu_postgres"))))
    return 0


def cmd_compare(a):
    memory, postgres = read_runs(a.memory), read_runs(a.postgres)
    memory_rate, postgres_rate = median_of(memory, "rate"), median_of(postgres, "rate")
    if not (memory_rate and postgres_rate):
        print("no runs to compare", file=sys.stderr)
        return 1
    print("postgres/memory throughput: %.0f%% (persistence costs %.0f%%; target <= 30%%)"
          % (100 * postgres_rate / memory_rate, 100 * (1 - postgres_rate / memory_rate)))
    memory_cpu, postgres_cpu = median_of(memory, "cpu_machine"), median_of(postgres, "cpu_machine")
    database_cpu = median_of(postgres, "cpu_postgres")
    print("machine CPU per execution: postgres %.0f us, memory %.0f us; on saturated cores that "
          "allows %.0f%% of the in-memory throughput, and PostgreSQL's own %.0f us alone (with "
          "no gateway-side cost) at most %.0f%%"
          % (postgres_cpu, memory_cpu, 100 * memory_cpu / postgres_cpu, database_cpu,
             100 * memory_cpu / (memory_cpu + database_cpu)))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--sessions", type=int, required=True)
    s.add_argument("--workflow", choices=sorted(WORKFLOWS), default="route_and_merge")
    s = sub.add_parser("inputs")
    s.add_argument("--workflow", choices=sorted(WORKFLOWS), default="route_and_merge")
    s = sub.add_parser("latency")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--targets", required=True)
    s.add_argument("--sample", type=int, default=20)
    s = sub.add_parser("executed")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--token", required=True)
    s = sub.add_parser("events-written")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--token", required=True)
    s = sub.add_parser("wait-idle")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--timeout", type=float, default=60.0)
    s.add_argument("--interval", type=float, default=0.05)
    s = sub.add_parser("cpu-ticks")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--postmaster", type=int, default=0)
    s = sub.add_parser("run-line")
    s.add_argument("--label", required=True)
    s.add_argument("--run", type=int, required=True)
    s.add_argument("--start", type=float, required=True)
    s.add_argument("--end", type=float, required=True)
    s.add_argument("--before", type=int, required=True)
    s.add_argument("--after", type=int, required=True)
    s.add_argument("--wrk", required=True)
    s.add_argument("--exec-latency", default="")
    s.add_argument("--cpu-before", required=True)
    s.add_argument("--cpu-after", required=True)
    s = sub.add_parser("compare")
    s.add_argument("memory")
    s.add_argument("postgres")
    s = sub.add_parser("summary")
    s.add_argument("--label", required=True)
    s.add_argument("file")
    a = p.parse_args()
    try:
        return {"setup": cmd_setup, "inputs": cmd_inputs, "latency": cmd_latency,
                "executed": cmd_executed, "wait-idle": cmd_wait_idle,
                "events-written": cmd_events_written, "cpu-ticks": cmd_cpu_ticks,
                "run-line": cmd_run_line, "summary": cmd_summary, "compare": cmd_compare}[a.cmd](a) or 0
    except (OSError, http.client.HTTPException, RuntimeError, ValueError, KeyError) as exc:
        print("ERROR: %s: %s" % (a.cmd, exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
