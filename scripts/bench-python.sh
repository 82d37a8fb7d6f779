#!/usr/bin/env bash
# scripts/bench-python.sh — PythonCodeNode execution benchmark for
# kailash-gateway (prints numbers; not a test, nothing fails on slow results).
#
#   bash scripts/bench-python.sh [--duration S] [--runs R]
#                                [--connections N] [--no-build] [--bin PATH]
#                                [--rate R]
#
# executions.e2e python_double: executions per second of a 1-node
# PythonCodeNode workflow (`result = {'n': x * 2}`, input x = 21) started AND
# completed over HTTP at N concurrent clients (default 32; target >= 2,000/s
# with execution latency p99 <= 30 ms), with the start latency (wrk) and the
# execution latency (created_at -> completed_at, sampled) p50/p99. Unpaced,
# wrk starts executions faster than they complete, so the execution latency
# is the backlog's; `--rate 2000` paces the starts to the target rate and
# measures the latency there.
#
# This is scripts/bench-executions.sh --workflow python_double: the same
# server setup, runs and accounting (see its header). The workers use
# `python3` from PATH unless KAILASH_PYTHON_EXECUTABLE says otherwise; other
# KAILASH_PYTHON_* settings (e.g. KAILASH_PYTHON_WORKERS) pass through too.
set -euo pipefail

exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bench-executions.sh" --workflow python_double "$@"
