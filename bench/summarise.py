#!/usr/bin/env python3
"""Summarise bench/compare.sh results: one markdown table of medians (min-max) and ratios.

Usage: summarise.py RESULTS_DIR "amqtt mosquitto rumqttd" REPS MODE DURATION CONNS RATE BROKER_CORE LOAD_CORE
Reads RESULTS_DIR/<scenario>.<broker>.<rep>.json as written by compare.sh (amqtt_bench --json
output, plus broker_cpu_s or broker_rss_kb where the script measured them).
"""

import glob
import json
import os
import statistics
import sys
from datetime import datetime, timezone


def metric_fanin_rate(r):
    return r["receive"]["rate"]


def loss_pct(r):
    return r["receive"]["loss_pct"]


def lost(r):
    return r["receive"]["lost"]


def cpu_per_million(r):
    received = r["receive"]["received"]
    return r["broker_cpu_s"] / (received / 1e6) if received else None


def latency(key):
    return lambda r: (r["receive"]["latency_us"] or {}).get(key)


def kb_per_conn(r):
    connected = r["connections"]["connected"]
    before, after = r["broker_rss_kb"]
    return (after - before) / connected if connected else None


def connect_s(r):
    return r["connections"]["connect_s"]


# (scenario, label, metric, extractor, higher_is_better, format)
ROWS = [
    ("fanin", "fan-in 8 pubs → 1 sub, QoS 0, 64 B", "received msgs/s", metric_fanin_rate, True, "{:,.0f}"),
    ("fanin", "", "loss %", loss_pct, False, "{:.2f}"),
    ("fanin", "", "broker CPU s per million delivered", cpu_per_million, False, "{:.2f}"),
    ("fanout", "fan-out 1 pub → 64 subs, QoS 0, 64 B", "delivered msgs/s", metric_fanin_rate, True, "{:,.0f}"),
    ("fanout", "", "loss %", loss_pct, False, "{:.2f}"),
    ("qos1", "QoS 1, 8 pubs (window 16) → 1 sub", "received msgs/s", metric_fanin_rate, True, "{:,.0f}"),
    ("qos1", "", "lost messages", lost, False, "{:.0f}"),
    ("qos2", "QoS 2, 8 pubs (window 16) → 1 sub", "received msgs/s", metric_fanin_rate, True, "{:,.0f}"),
    ("qos2", "", "lost messages", lost, False, "{:.0f}"),
    ("latency", "latency, 1 pub → 1 sub, QoS 0, {rate} msgs/s", "p50 µs", latency("p50"), False, "{:,.0f}"),
    ("latency", "", "p99 µs", latency("p99"), False, "{:,.0f}"),
    ("latency", "", "p99.9 µs", latency("p999"), False, "{:,.0f}"),
    ("conns", "{conns} idle connections", "broker RSS KB per connection", kb_per_conn, False, "{:.2f}"),
    ("conns", "", "seconds to connect all", connect_s, False, "{:.2f}"),
]


def load(results, scenario, broker, reps):
    values, failures = [], 0
    for rep in range(1, reps + 1):
        path = os.path.join(results, f"{scenario}.{broker}.{rep}.json")
        try:
            with open(path) as f:
                result = json.load(f)
        except (OSError, ValueError):
            failures += 1
            continue
        if "failed" in result:
            failures += 1
            continue
        values.append(result)
    return values, failures


def cell(values, fmt):
    if not values:
        return "–", None
    median = statistics.median(values)
    if len(values) == 1:
        return fmt.format(median), median
    return f"{fmt.format(median)} ({fmt.format(min(values))}–{fmt.format(max(values))})", median


def ratio(ours, theirs):
    if ours is None or theirs is None or theirs == 0:
        return "–"
    return f"{ours / theirs:.2f}×"


def main():
    results, brokers, reps, mode, duration, conns, rate, broker_core, load_core = sys.argv[1:10]
    brokers = brokers.split()
    reps = int(reps)
    others = [b for b in brokers if b != "amqtt"] if "amqtt" in brokers else []
    header = ["scenario", "metric"] + brokers + [f"amqtt ÷ {b}" for b in others]
    print(
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {mode} mode "
        f"({duration} per run, median of {reps} runs, (min–max)); broker pinned to core "
        f"{broker_core}, amqtt_bench to core {load_core}; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end."
    )
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    notes = []
    for scenario, label, metric, extract, higher_better, fmt in ROWS:
        if not glob.glob(os.path.join(results, f"{scenario}.*.json")):
            continue  # not run (BENCH_SCENARIOS)
        medians = {}
        cells = []
        for broker in brokers:
            runs, failures = load(results, scenario, broker, reps)
            values = []
            for r in runs:
                try:
                    v = extract(r)
                except (KeyError, TypeError):
                    v = None
                if v is not None:
                    values.append(v)
            text, medians[broker] = cell(values, fmt)
            if failures:
                text += f" [{failures} failed]"
                notes.append(f"{scenario} on {broker}: {failures} run(s) failed")
            cells.append(text)
        arrow = "↑" if higher_better else "↓"
        ratios = [ratio(medians.get("amqtt"), medians.get(b)) for b in others]
        name = label.format(rate=rate, conns=conns)
        print(f"| {name} | {metric} {arrow} | " + " | ".join(cells + ratios) + " |")
    print()
    print("↑ higher is better, ↓ lower is better. Ratios are amqtt's median over the other broker's.")
    for note in sorted(set(notes)):
        print(f"- {note}")


if __name__ == "__main__":
    main()
