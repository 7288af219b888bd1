"""Draws a Grafana dashboard's panels from Prometheus data into one PNG (see render-dashboard.sh).

Only what the ingress-failover dashboard uses is supported: rows, timeseries (lines or bars, unit,
min/max, threshold lines) and state-timeline panels; variables with an "All" value; the
$__rate_interval macro, computed as Grafana does (max(4 x scrape interval, step + scrape)).
"""

import argparse
import datetime as dt
import json
import re
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

BG, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#705da0", "#37872d", "#fade2a", "#ff9830", "#c4162a"]
COL_IN, ROW_IN = 20 / 24, 0.34  # inches per grid column / grid row


def query_range(prom, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{q}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or str(labels)


def expand(expr, variables, rate_interval):
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value)
    return expr.replace("$__rate_interval", f"{rate_interval}s")


def unit_formatter(unit):
    if unit == "percentunit":
        return FuncFormatter(lambda v, _: f"{v * 100:.0f}%")
    if unit == "percent":
        return FuncFormatter(lambda v, _: f"{v:.0f}%")
    if unit == "s":
        return FuncFormatter(lambda v, _: f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s")
    if unit == "reqps":
        return FuncFormatter(lambda v, _: f"{v:g}/s")
    return FuncFormatter(lambda v, _: f"{v:g}")


def style(ax, title):
    ax.set_facecolor(PANEL)
    ax.set_title(title, color=TEXT, fontsize=9, loc="left", pad=4)
    ax.tick_params(colors=TEXT, labelsize=7)
    for s in ax.spines.values():
        s.set_color(GRID)
    ax.grid(color=GRID, linewidth=0.5)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dashboard", required=True)
    p.add_argument("--prometheus", required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--end", type=float, required=True)
    p.add_argument("--scrape-interval", type=float, default=15)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    d = json.load(open(a.dashboard))
    step = max(1.0, round((a.end - a.start) / 400))
    rate_interval = int(max(4 * a.scrape_interval, step + a.scrape_interval))
    variables = {v["name"]: v.get("allValue", ".*") for v in d["templating"]["list"]
                 if v["type"] == "query"}
    bottom = max(pn["gridPos"]["y"] + pn["gridPos"]["h"] for pn in d["panels"])
    fig = plt.figure(figsize=(24 * COL_IN, bottom * ROW_IN + 0.6), facecolor=BG)
    fig.suptitle(f"{d['title']} — rendered from an `ingress-failover demo` run "
                 f"({dt.datetime.fromtimestamp(a.start, dt.UTC):%Y-%m-%d %H:%M} UTC, "
                 f"{(a.end - a.start) / 60:.1f} min)", color=TEXT, fontsize=11, x=0.01, ha="left")
    W, H = 24 * COL_IN, bottom * ROW_IN + 0.6
    rel = lambda t: (t - a.start) / 60.0  # minutes since the demo began  # noqa: E731
    clock = FuncFormatter(lambda v, _: f"{int(v)}:{round(v * 60) % 60:02d}")

    for pn in d["panels"]:
        g = pn["gridPos"]
        left, width = g["x"] * COL_IN / W, g["w"] * COL_IN / W
        top = 1 - (0.5 + g["y"] * ROW_IN) / H
        height = g["h"] * ROW_IN / H
        if pn["type"] == "row":
            fig.text(left + 0.005, top - height / 2, pn["title"], color=TEXT, fontsize=10,
                     weight="bold", va="center")
            continue
        # margins in inches: room for the y tick labels, the x tick labels and the title
        mx, mb, mt = (0.9 if pn["type"] == "state-timeline" else 0.55) / W, 0.3 / H, 0.3 / H
        ax = fig.add_axes([left + mx, top - height + mb, width - mx - 0.1 / W,
                           height - mb - mt])
        style(ax, pn["title"])
        defaults = pn.get("fieldConfig", {}).get("defaults", {})
        custom = defaults.get("custom", {})
        color = iter(PALETTE * 4)
        if pn["type"] == "state-timeline":
            rows = {}
            for t in pn["targets"]:
                for s in query_range(a.prometheus, expand(t["expr"], variables, rate_interval),
                                     a.start, a.end, step):
                    rows.setdefault(legend(t.get("legendFormat", ""), s["metric"]), []).extend(
                        float(ts) for ts, _ in s["values"])
            names = sorted(rows, key=lambda n: min(rows[n]))
            for i, name in enumerate(names):
                c = next(color)
                spans = [(rel(ts), step / 60.0) for ts in sorted(rows[name])]
                ax.broken_barh(spans, (i - 0.4, 0.8), facecolors=c)
                ax.text(rel(min(rows[name])), i, " " + name.split(" ")[-1], va="center",
                        fontsize=7, color="#111217")
            ax.set_yticks(range(len(names)), [n.split(" ")[0] for n in names])
            ax.set_xlim(0, rel(a.end))
            ax.xaxis.set_major_formatter(clock)
            ax.invert_yaxis()
            ax.grid(False)
            continue
        for t in pn["targets"]:
            for s in query_range(a.prometheus, expand(t["expr"], variables, rate_interval),
                                 a.start, a.end, step):
                xs = [rel(float(ts)) for ts, _ in s["values"]]
                ys = [float(v) for _, v in s["values"]]
                c = next(color)
                label = legend(t.get("legendFormat", ""), s["metric"])
                if custom.get("drawStyle") == "bars":
                    ax.bar(xs, ys, width=step / 60.0, color=c, label=label)
                else:
                    ax.step(xs, ys, where="post", color=c, linewidth=1.4, label=label)
        for th in defaults.get("thresholds", {}).get("steps", [])[1:]:
            ax.axhline(th["value"], color="#f2495c", linestyle="--", linewidth=0.8)
        lo, hi = defaults.get("min"), defaults.get("max")
        if lo is not None or hi is not None:
            ymin, ymax = ax.get_ylim()
            span = (hi if hi is not None else ymax) - (lo if lo is not None else ymin)
            ax.set_ylim(lo if lo is not None else ymin,
                        (hi + 0.05 * span) if hi is not None else ymax)
        ax.set_xlim(0, rel(a.end))
        ax.yaxis.set_major_formatter(unit_formatter(defaults.get("unit", "short")))
        ax.xaxis.set_major_formatter(clock)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left", ncol=3, frameon=False, labelcolor=TEXT)
    fig.savefig(a.out, dpi=90, facecolor=BG)


if __name__ == "__main__":
    main()
