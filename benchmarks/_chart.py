"""The chart of a benchmark run: docs/img/bench.png, shown by the README and docs/benchmarks.md.

Drawn by ``run.py`` from the same results it writes to ``results.md`` (matplotlib, from the
``bench`` dependency group). Three panels: the send rows (time per send / a direct loop over the
receivers), the connect + disconnect rows (time / a list append + remove) and the bytes per
connection rows, one bar per library, tocsin first and labelled. Linear axes, each cut at a limit
past which a bar is labelled with its value (psygnal's and PyDispatcher's empty-signal sends are
13x to 14x). Rows or libraries a run did not measure are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {
    "tocsin": "#d1495b",
    "django": "#4f6d7a",
    "django-cached": "#8fa9b5",
    "blinker": "#edae49",
    "psygnal": "#66a182",
    "pydispatcher": "#8d6a9f",
}


def _label(value: float, unit: str) -> str:
    return f"{value:.2f}x" if unit == "x" else f"{value:,.0f} B"


def _panel(
    ax: Any, rows: list[tuple[str, dict[str, float]]], names: list[str], unit: str, limit: float
) -> None:
    """Horizontal grouped bars: one group per row (top to bottom), one bar per library.

    The axis is linear and stops at *limit*: a longer bar is cut there and labelled with its value.
    """
    height = 0.8 / len(names)
    for i, name in enumerate(names):
        ys, values = [], []
        for r, (_, measured) in enumerate(rows):
            if name in measured:
                ys.append(len(rows) - 1 - r + 0.4 - (i + 0.5) * height)
                values.append(measured[name])
        color = COLORS.get(name, "#999999")
        bars = ax.barh(ys, [min(v, limit) for v in values], height=height * 0.92, color=color, label=name)
        labels = [
            _label(v, unit) if name == "tocsin" else (_label(v, unit) + " \u2192" if v > limit else "")
            for v in values
        ]
        weight = "bold" if name == "tocsin" else "normal"
        ax.bar_label(bars, labels, padding=2, fontsize=7, color=color, fontweight=weight)
    ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)], fontsize=8)
    ax.set_xlim(0, limit * 1.12)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def write_chart(
    rows: list[tuple[Any, dict[str, Any]]], names: list[str], info: list[str], path: Path
) -> bool:
    """Draw the run's results into *path* (PNG); False, with a message, without matplotlib."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("benchmarks: matplotlib is not installed (bench group): no chart written", flush=True)
        return False
    panels: dict[str, list[tuple[str, dict[str, float]]]] = {"send": [], "connect": [], "bytes": []}
    for scenario, result in rows:
        values = {name: v for name, v in result["value"].items() if name in names}
        if "tocsin" not in values:
            continue
        if scenario.unit == "x" and scenario.name.startswith("send,"):
            panels["send"].append((scenario.name.removeprefix("send, "), values))
        elif scenario.unit == "x" and scenario.name.startswith("connect + disconnect"):
            panels["connect"].append((scenario.name, values))
        elif scenario.unit == "B" and scenario.name.startswith("bytes per"):
            label = scenario.name.removeprefix("bytes per ").removeprefix("connection, ")
            panels["bytes"].append((label, values))
    shown = [name for name in names if any(name in v for rs in panels.values() for _, v in rs)]
    fig = plt.figure(figsize=(11, 9.5), dpi=110)
    grid = fig.add_gridspec(2, 2, height_ratios=[2.1, 1], hspace=0.42, wspace=0.55)
    titles = {
        "send": "send(): time per send / a direct loop calling the same receivers (lower is better)",
        "connect": "connect + disconnect: time / list append + remove\n(lower is better)",
        "bytes": "memory per connection, bytes\n(lower is better)",
    }
    limits = {"send": 8.0, "connect": 200.0, "bytes": 1500.0}
    places = {"send": grid[0, :], "connect": grid[1, 0], "bytes": grid[1, 1]}
    for key, panel_rows in panels.items():
        if not panel_rows:
            continue
        ax = fig.add_subplot(places[key])
        _panel(ax, panel_rows, shown, "B" if key == "bytes" else "x", limits[key])
        ax.set_title(titles[key], fontsize=9, loc="left")
        if key != "bytes":
            ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        if key == "send":
            ax.axvline(1, color="#555555", linewidth=0.8, linestyle=":")
            fig.legend(
                *ax.get_legend_handles_labels(),
                loc="upper left",
                ncol=len(shown),
                fontsize=8,
                frameon=False,
                bbox_to_anchor=(0.02, 0.955),
            )
    date = next((line.split(": ", 1)[1] for line in info if line.startswith("- Date")), "")
    python = next(
        (line.split(": ", 1)[1].split(" on ")[0] for line in info if line.startswith("- Python")), ""
    )
    cpu = next((line.split(": ", 1)[1].split(";")[0] for line in info if line.startswith("- CPU")), "")
    fig.suptitle(f"tocsin and its peers: make bench, {date}; {python}; {cpu}", fontsize=10, x=0.02, ha="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return True
