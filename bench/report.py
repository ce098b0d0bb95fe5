#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The report of bench/run.sh: the table, the targets and the result file.

    report.py report RAW INFO META OUT   the readable table on stdout, and
                                         OUT (JSON if it ends in .json, TSV
                                         otherwise)
    report.py meta META                  writes META (JSON) from the
                                         environment run.sh exports

RAW has one line per measurement (case, tool, rep, seconds, peak RSS KiB,
status), INFO one per case (case, description, items, bytes per item).
Nothing is asserted: the targets are printed next to the results, met or
not.
"""
import json
import os
import platform
import statistics
import sys
import time

ORDER = ["throughput.zstd", "throughput.gpg", "scan.zstd", "scan.gpg",
         "process.zstd", "process.plain", "scale.cold", "scale.ls", "scale.status",
         "scale.process1"]
# "limit": the pipeline of standard tools a relay is compared with;
# "floor": bench/floor.c, the irreducible work of the same jobs.
TOOLS = ["safespool", "fspl", "limit", "floor"]
RSS_LIMIT_KIB = 16 * 1024
# (kind, threshold): "limit": safespool/limit <= t; "rss": peak RSS <= t KiB;
# "speedup": fspl/safespool >= t; "fspl": safespool/fspl <= t; "floor":
# safespool/floor <= t; "rss_fspl": safespool's peak RSS <= t x fspl's.
TARGETS = {
    "throughput.zstd": [("limit", 1.05), ("rss", RSS_LIMIT_KIB)],
    "throughput.gpg": [("limit", 1.05), ("rss", RSS_LIMIT_KIB)],
    "scan.zstd": [("speedup", 20)],
    "scan.gpg": [("speedup", 5)],
    "process.zstd": [("floor", 1.25)],
    "process.plain": [("floor", 1.25)],
    "scale.cold": [("fspl", 1.0), ("rss_fspl", 2.0)],
    "scale.ls": [("fspl", 0.3), ("rss", 32 * 1024)],
    "scale.status": [],
    "scale.process1": [("fspl", 0.1)],
}


def target_text(kind, t):
    return {"limit": "<= %.2fx limit" % t,
            "rss": "peak RSS <= %d MiB" % (t // 1024),
            "speedup": ">= %gx faster than fspl" % t,
            "fspl": "<= %.2fx fspl" % t if t != 1.0 else "no slower than fspl",
            "floor": "<= %.2fx floor" % t,
            "rss_fspl": "peak RSS <= %gx fspl's" % t}[kind]


def median(xs):
    return statistics.median(xs) if xs else None


def read_infos(info):
    """{case: (description, items, bytes per item)}"""
    infos = {}
    for line in open(info):
        case, what, items, unit_bytes = line.rstrip("\n").split("\t")
        infos[case] = (what, int(items), int(unit_bytes))
    return infos


def read_samples(raw):
    """{(case, tool): {"secs": [...], "rss": [...], "errors": [...]}}"""
    samples = {}
    for line in open(raw):
        case, tool, rep, secs, rss, status = line.rstrip("\n").split("\t")
        s = samples.setdefault((case, tool), {"secs": [], "rss": [], "errors": []})
        if status == "ok":
            s["secs"].append(float(secs))
            s["rss"].append(int(rss) if rss.isdigit() else 0)
        else:
            s["errors"].append("rep %s: %s" % (rep, status))
    return samples


def case_rows(case, info, samples):
    """One row per tool measured in `case`, with its ratios to the others."""
    what, items, unit_bytes = info
    rows = []
    for tool in TOOLS:
        s = samples.get((case, tool))
        if s is None:
            continue
        rows.append({
            "case": case, "tool": tool, "what": what, "items": items,
            "reps": len(s["secs"]) + len(s["errors"]),
            "median_s": median(s["secs"]), "min_s": min(s["secs"]) if s["secs"] else None,
            "max_s": max(s["secs"]) if s["secs"] else None,
            "samples_s": s["secs"],
            "peak_rss_kib": max(s["rss"]) if s["rss"] else None,
            "status": "ok" if not s["errors"] else "; ".join(s["errors"]),
            "target": "", "target_met": "",
        })
    med = {r["tool"]: r["median_s"] for r in rows}
    for r in rows:
        m = r["median_s"]
        for other in ("fspl", "limit", "floor"):
            r["ratio_" + other] = (m / med[other]) if m and med.get(other) else None
        if case.startswith("throughput") and m:
            r["rate"] = "%.0f MiB/s" % (items * unit_bytes / m / 2**20)
        elif m:
            r["rate"] = "%.3f s/job" % m if case.endswith("process1") else "%.0f jobs/s" % (items / m)
        else:
            r["rate"] = ""
    return rows


def judge(kind, t, r, fspl_rss):
    """(value text, met or None) of target (kind, t) for safespool's row r."""
    if kind == "limit" and r["ratio_limit"] is not None:
        return "%.2fx" % r["ratio_limit"], r["ratio_limit"] <= t
    if kind == "rss" and r["peak_rss_kib"]:
        return "%.1f MiB" % (r["peak_rss_kib"] / 1024), r["peak_rss_kib"] <= t
    if kind == "speedup" and r["ratio_fspl"]:
        return "%.1fx faster" % (1 / r["ratio_fspl"]), 1 / r["ratio_fspl"] >= t
    if kind == "fspl" and r["ratio_fspl"] is not None:
        return "%.3fx fspl" % r["ratio_fspl"], r["ratio_fspl"] <= t
    if kind == "floor" and r["ratio_floor"] is not None:
        return "%.3fx floor" % r["ratio_floor"], r["ratio_floor"] <= t
    if kind == "rss_fspl" and r["peak_rss_kib"] and fspl_rss:
        ratio = r["peak_rss_kib"] / fspl_rss
        return "%.2fx fspl's" % ratio, ratio <= t
    return None, None


def judge_case(case, rows):
    """The targets of `case`, judged on its safespool row (which notes them)."""
    fspl_rss = next((r["peak_rss_kib"] for r in rows if r["tool"] == "fspl"), None)
    targets = []
    for r in rows:
        if r["tool"] != "safespool":
            continue
        for kind, t in TARGETS.get(case, []):
            value, met = judge(kind, t, r, fspl_rss)
            verdict = "n/a" if met is None else ("met" if met else "NOT met")
            targets.append({"case": case, "target": target_text(kind, t),
                            "value": value, "verdict": verdict})
        r["target"] = "; ".join(x["target"] for x in targets)
        r["target_met"] = "; ".join(x["verdict"] for x in targets)
    return targets


def print_table(meta, rows, targets, infos):
    def fs(x, fmt="%.3f"):
        return "-" if x is None else fmt % x

    print()
    print("SafeSpool benchmark: %s sizes, %d reps, %s" % (meta["mode"], meta["reps"], meta["date"]))
    print("  %s (%s, git %s) | %s | %d CPUs | load %s before, %s after" % (
        meta["safespool_version"], meta["safespool"], meta["git"], meta["fspl_version"],
        meta["cpus"], meta["load_before"], meta["load_after"]))
    print()
    hdr = ("case", "tool", "median s", "min s", "max s", "peak RSS", "ss/fspl", "ss/limit",
           "ss/floor", "rate")
    fmt = "%-15s %-9s %9s %9s %9s %9s %8s %8s %8s %14s"
    print(fmt % hdr)
    print(fmt % tuple("-" * len(h) for h in hdr))
    last = None
    for r in rows:
        if last and r["case"] != last:
            print()
        last = r["case"]
        tools = [x["tool"] for x in rows if x["case"] == r["case"]]
        ratio = {o: fs(r["ratio_" + o], "%.3fx") if r["tool"] != o and o in tools else ""
                 for o in ("fspl", "limit", "floor")}
        print(fmt % (
            r["case"], r["tool"], fs(r["median_s"]), fs(r["min_s"]), fs(r["max_s"]),
            "-" if not r["peak_rss_kib"] else "%.1f MiB" % (r["peak_rss_kib"] / 1024),
            ratio["fspl"], ratio["limit"], ratio["floor"], r["rate"]))
        if r["status"] != "ok":
            print("    ERROR: %s" % r["status"])
    print()
    print("Targets (safespool; printed, not asserted):")
    for t in targets:
        print("  %-15s %-28s %-16s %s" % (t["case"], t["target"], t["value"] or "-", t["verdict"]))
    print()
    print("Cases:")
    for case in ORDER:
        if case in infos:
            print("  %-15s %s" % (case, infos[case][0]))


TSV_COLUMNS = ["case", "tool", "items", "reps", "median_s", "min_s", "max_s", "peak_rss_kib",
               "ratio_fspl", "ratio_limit", "ratio_floor", "target", "target_met", "status",
               "samples_s"]


def tsv_value(column, v):
    if v is None:
        return ""
    if column == "samples_s":
        return ",".join("%.6f" % x for x in v)
    if isinstance(v, float):
        return "%.6f" % v
    return str(v)


def write_results(out, meta, rows, targets):
    with open(out, "w") as f:
        if out.endswith(".json"):
            json.dump({"meta": meta, "results": rows, "targets": targets}, f, indent=2)
            f.write("\n")
            return
        f.write("\t".join(TSV_COLUMNS) + "\n")
        for r in rows:
            f.write("\t".join(tsv_value(c, r.get(c)) for c in TSV_COLUMNS) + "\n")


def report(raw, info, meta_json, out):
    meta = json.loads(open(meta_json).read())
    infos, samples = read_infos(info), read_samples(raw)
    rows, targets = [], []
    for case in ORDER:
        if case in infos:
            these = case_rows(case, infos[case], samples)
            targets += judge_case(case, these)
            rows += these
    print_table(meta, rows, targets, infos)
    write_results(out, meta, rows, targets)


def write_meta(path):
    e = os.environ
    with open(path, "w") as f:
        json.dump({
            "mode": e["MODE"], "reps": int(e["REPS"]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": " ".join(platform.uname()[i] for i in (0, 2, 4)), "cpus": os.cpu_count(),
            "git": e["GIT_COMMIT"],
            "safespool": e["SAFESPOOL"], "safespool_version": e["SAFESPOOL_VERSION"],
            "fspl": e["FSPL"], "fspl_version": e["FSPL_VERSION"],
            "load_before": e["LOAD_BEFORE"], "load_after": e["LOAD_AFTER"],
            "payload_bytes": int(e["PAYLOAD_BYTES"]), "small_packets": int(e["N_SMALL"]),
            "plain_jobs": int(e["N_PLAIN"]), "scale_packets": int(e["N_SCALE"])}, f)


def main(argv):
    commands = {"report": (report, 4), "meta": (write_meta, 1)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        sys.stderr.write(__doc__)
        return 2
    commands[argv[1]][0](*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
