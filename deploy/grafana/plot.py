"""Draw the dashboard's main panels as a PNG from a real run's Prometheus query results.

Grafana cannot be installed everywhere (not on the machines this project is built on), so the
docs show the dashboard this way. The data comes from tests/integration/test_dashboard.py, which
runs a stack under a real Prometheus and, with OCTOLLM_DASHBOARD_DUMP set, saves every panel's
range query over the run:

    OCTOLLM_DASHBOARD_DUMP=/tmp/dashboard.json .venv/bin/python -m pytest \
        tests/integration/test_dashboard.py -m slow
    .venv/bin/python deploy/grafana/plot.py /tmp/dashboard.json docs/dashboard.png

Each subplot is one panel of deploy/grafana/dashboards/octollm.json (same title, same queries,
same legends), drawn with matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render to a file

import matplotlib.dates as mdates  # noqa: E402 - after choosing the backend
import matplotlib.pyplot as plt  # noqa: E402

# The panels drawn, in reading order (titles of the dashboard's panels).
MAIN = ["Submit rate", "Tasks by status", "Processing time (submit to finish)", "Queue depth",
        "Step outcomes per arm", "Step duration per arm (p95)", "Reconciliation actions",
        "API latency", "LLM tokens"]
UNITS = {"Submit rate": "tasks/s", "Tasks by status": "transitions/s",
         "Processing time (submit to finish)": "s", "Queue depth": "messages",
         "Step outcomes per arm": "attempts/s", "Step duration per arm (p95)": "s",
         "Reconciliation actions": "actions", "API latency": "s", "LLM tokens": "tokens/s"}
MAX_LINES = 8  # a legend beyond that is unreadable at this size: the largest series are kept


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def series(panel: list[dict]) -> list[tuple[str, list[datetime], list[float]]]:
    lines = []
    for target in panel:
        for result in target["result"]:
            times = [datetime.fromtimestamp(float(t)) for t, _ in result["values"]]
            values = [float(v) for _, v in result["values"]]
            # NaN (a quantile with no observation in the window) is left out by matplotlib.
            lines.append((legend(target["legend"], result["metric"]), times, values))
    lines.sort(key=lambda line: -max((v for v in line[2] if v == v), default=0.0))
    return lines[:MAX_LINES]


def plot(dump: dict, out: Path) -> None:
    columns = 3
    rows = -(-len(MAIN) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(15, 3.6 * rows), constrained_layout=True)
    start = datetime.fromtimestamp(dump["start"]).strftime("%Y-%m-%d %H:%M:%S")
    fig.suptitle(f"OctoLLM overview (deploy/grafana/dashboards/octollm.json), run of {start}",
                 fontsize=13)
    window = (datetime.fromtimestamp(dump["start"]), datetime.fromtimestamp(dump["end"]))
    for ax, title in zip(axes.flat, MAIN, strict=False):
        lines = series(dump["panels"][title])
        for name, times, values in lines:
            ax.plot(times, values, linewidth=1.2, label=name)
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(UNITS[title], fontsize=9)
        ax.set_ylim(bottom=0)
        ax.set_xlim(*window)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(mdates.SecondLocator(bysecond=[0, 30]))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.tick_params(labelsize=8)
        if lines:
            ax.legend(fontsize=7, loc="upper left", ncol=2 if len(lines) > 4 else 1)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(MAIN):]:
        ax.axis("off")
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dump", type=Path, help="the JSON test_dashboard.py wrote")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args()
    plot(json.loads(args.dump.read_text()), args.out)


if __name__ == "__main__":
    main()
