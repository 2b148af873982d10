#!/usr/bin/env python3
"""Turns the raw results of bench/run.sh into Markdown: a table of medians and ratios,
and the project's performance targets with whether each is met.

Usage: bench/summarize.py bench/results/RUN.tsv   (standard library only)
"""

import csv
import statistics
import sys
from collections import defaultdict

LABELS = {
    "native/hello": ("native hyper", "Rust, native"),
    "flask/hello": ("Flask + gunicorn (2 workers)", "Python, native"),
    "wasmtime/hello": ("`wasmtime serve`", "hello (Rust)"),
    "wasi-host/hello": ("wasi-host", "hello (Rust)"),
    "wasi-host-workers/hello": ("wasi-host `--workers auto`", "hello (Rust)"),
    "wasmtime/python": ("`wasmtime serve`", "Python guest"),
    "wasi-host/python": ("wasi-host", "Python guest"),
    "wasi-host-workers/python": ("wasi-host `--workers auto`", "Python guest"),
    "wasmtime/hello3": ("`wasmtime serve`", "0.3 hello (Rust)"),
    "wasi-host/hello3": ("wasi-host", "0.3 hello (Rust)"),
    "wasi-host-workers/hello3": ("wasi-host `--workers auto`", "0.3 hello (Rust)"),
    "wasmtime-reuse/hello": ("`wasmtime serve`, reuse 128", "hello (Rust)"),
    "wasi-host-reuse/hello": ("wasi-host, reuse 128", "hello (Rust)"),
    "wasi-host-workers-reuse/hello": ("wasi-host `--workers auto`, reuse 128", "hello (Rust)"),
    "wasi-host/spinpy": ("wasi-host", "Spin 4 Python app"),
    "wasi-host-workers/spinpy": ("wasi-host `--workers auto`", "Spin 4 Python app"),
    "wasi-host/counter": ("wasi-host", "visit counter (Rust, Redis)"),
    "wasi-host-workers/counter": ("wasi-host `--workers auto`", "visit counter (Rust, Redis)"),
}

# The two ways wasi-host is measured: its default (one process) and a process per core.
WASI_HOSTS = (("wasi-host", "1 process"), ("wasi-host-workers", "`--workers auto`"))


def load(path):
    """Returns the header comments and {server: {metric: [values]}}."""
    with open(path, newline="") as file:
        lines = file.read().splitlines()
    header = [line for line in lines if line.startswith("#")]
    values = defaultdict(lambda: defaultdict(list))
    for row in csv.DictReader([line for line in lines if not line.startswith("#")], delimiter="\t"):
        values[row["server"]][row["metric"]].append(float(row["value"]))
    return header, values


def median(values, server, metric):
    found = values.get(server, {}).get(metric)
    return statistics.median(found) if found else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, kind):
    if value is None:
        return "–"
    if kind == "rps":
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    if kind == "ms":
        return f"{value:.3g}" if value < 100 else f"{value:,.0f}"
    if kind == "mib":
        return f"{value / 1024:.1f}"
    if kind == "x":
        if value < 0.1:
            return f"{value:.2g}×"
        return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"
    raise ValueError(kind)


def results_table(values):
    rows = [
        "| server | guest | req/s, 1 conn | req/s, 80 conns (min–max) | p50 / p99, 1 conn (ms) "
        "| p50 / p99, 80 conns (ms) | cold start, native or precompiled (ms) "
        "| cold start, compiling the .wasm (ms) "
        "| peak RSS, 80 conns (MiB) | 80 conns vs `wasmtime serve` | 80 conns vs native |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    native_rps = median(values, "native/hello", "rps_c80")
    for server, (name, guest) in LABELS.items():
        if server not in values:
            continue

        def m(metric, server=server):
            return median(values, server, metric)

        rps80 = values[server].get("rps_c80", [])
        spread = f" ({fmt(min(rps80), 'rps')}–{fmt(max(rps80), 'rps')})" if len(rps80) > 1 else ""
        # A wasm host is compared on its own guest; the native servers on hello.
        kind, guest_name = server.split("/")
        wasm_host = kind.startswith(("wasmtime", "wasi-host"))
        anchor = "wasmtime-reuse/" if kind.endswith("-reuse") else "wasmtime/"
        same_guest = anchor + (guest_name if wasm_host else "hello")
        cold = m("cold_cwasm_ms") if m("cold_native_ms") is None else m("cold_native_ms")
        rows.append(
            f"| {name} | {guest} | {fmt(m('rps_c1'), 'rps')} "
            f"| {fmt(m('rps_c80'), 'rps')}{spread} "
            f"| {fmt(m('p50_c1_ms'), 'ms')} / {fmt(m('p99_c1_ms'), 'ms')} "
            f"| {fmt(m('p50_c80_ms'), 'ms')} / {fmt(m('p99_c80_ms'), 'ms')} "
            f"| {fmt(cold, 'ms')} | {fmt(m('cold_wasm_ms'), 'ms')} "
            f"| {fmt(m('rss_c80_kib'), 'mib')} "
            f"| {fmt(ratio(m('rps_c80'), median(values, same_guest, 'rps_c80')), 'x')} "
            f"| {fmt(ratio(m('rps_c80'), native_rps), 'x')} |"
        )
    return rows


def targets_table(values):
    def m(server, metric):
        return median(values, server, metric)

    native_cold = m("native/hello", "cold_native_ms")

    def targets(host):
        """(target, measured ratio, limit, whether the ratio must be at least the limit)"""
        return [
            ("hello at 80 conns ≥ 4× `wasmtime serve`",
             ratio(m(f"{host}/hello", "rps_c80"), m("wasmtime/hello", "rps_c80")), 4, True),
            ("hello at 80 conns ≥ 0.5× native hyper",
             ratio(m(f"{host}/hello", "rps_c80"), m("native/hello", "rps_c80")), 0.5, True),
            ("p99 at 1 conn ≤ 2× native",
             ratio(m(f"{host}/hello", "p99_c1_ms"), m("native/hello", "p99_c1_ms")), 2, False),
            ("cold start, precompiled hello ≤ 2× native hello",
             ratio(m(f"{host}/hello", "cold_cwasm_ms"), native_cold), 2, False),
            ("cold start, precompiled Python guest ≤ 3× native hello",
             ratio(m(f"{host}/python", "cold_cwasm_ms"), native_cold), 3, False),
            ("peak RSS at 80 conns ≤ `wasmtime serve`, hello",
             ratio(m(f"{host}/hello", "rss_c80_kib"), m("wasmtime/hello", "rss_c80_kib")), 1, False),
            ("peak RSS at 80 conns ≤ `wasmtime serve`, Python guest",
             ratio(m(f"{host}/python", "rss_c80_kib"), m("wasmtime/python", "rss_c80_kib")), 1, False),
            ("Python guest at 80 conns ≥ 3× `wasmtime serve`",
             ratio(m(f"{host}/python", "rps_c80"), m("wasmtime/python", "rps_c80")), 3, True),
            ("0.3 hello at 80 conns ≥ 1.5× `wasmtime serve` 0.3 (its defaults, which reuse)",
             ratio(m(f"{host}/hello3", "rps_c80"), m("wasmtime/hello3", "rps_c80")), 1.5, True),
            ("0.3 hello at 80 conns ≥ 0.5× native hyper",
             ratio(m(f"{host}/hello3", "rps_c80"), m("native/hello", "rps_c80")), 0.5, True),
            ("0.2 hello, reuse 128, at 80 conns ≥ 1.5× `wasmtime serve`, reuse 128",
             ratio(m(f"{host}-reuse/hello", "rps_c80"), m("wasmtime-reuse/hello", "rps_c80")), 1.5, True),
            ("peak RSS at 80 conns ≤ `wasmtime serve`, 0.3 hello",
             ratio(m(f"{host}/hello3", "rss_c80_kib"), m("wasmtime/hello3", "rss_c80_kib")), 1, False),
            ("Spin 4 Python app at 80 conns ≥ the componentize-py hello",
             ratio(m(f"{host}/spinpy", "rps_c80"), m(f"{host}/python", "rps_c80")), 1, True),
        ]

    def met(measured, limit, at_least):
        return measured is not None and (measured >= limit if at_least else measured <= limit)

    columns = [targets(host) for host, _ in WASI_HOSTS]
    rows = [
        "| target (wasi-host) | " + " | ".join(name for _, name in WASI_HOSTS) + " | met |",
        "|---|" + "--:|" * len(WASI_HOSTS) + ":-:|",
    ]
    for index, (name, _, limit, at_least) in enumerate(columns[0]):
        measured = [column[index][1] for column in columns]
        meeting = [label for (_, label), value in zip(WASI_HOSTS, measured) if met(value, limit, at_least)]
        if all(value is None for value in measured):
            verdict = "not measured"
        elif len(meeting) == len(WASI_HOSTS):
            verdict = "yes"
        elif meeting:
            verdict = "with " + meeting[0]
        else:
            verdict = "**no**"
        cells = " | ".join(fmt(value, "x") for value in measured)
        rows.append(f"| {name} | {cells} | {verdict} |")
    return rows


def failures(values):
    """Lines naming servers that answered anything but 2xx or dropped connections."""
    notes = []
    for server, metrics in values.items():
        for metric, found in sorted(metrics.items()):
            if metric.startswith(("non2xx", "socket_errors")) and max(found) > 0:
                notes.append(f"- {server}: {metric} = {', '.join(f'{v:.0f}' for v in found)}")
    return notes


def main():
    header, values = load(sys.argv[1])
    out = [line.lstrip("# ").replace("\t", ": ") for line in header]
    out = [f"- {line}" for line in out] + [""]
    out += results_table(values) + [""] + targets_table(values)
    notes = failures(values)
    if notes:
        out += ["", "Errors seen by wrk (per round):", *notes]
    print("\n".join(out))
    # A run with errors measured something other than serving: it must not pass.
    if notes:
        sys.exit("bench: servers answered non-2xx or lost connections; see the errors above")


if __name__ == "__main__":
    main()
