"""Write the speed tables of README.md and docs/benchmarks.md from the last ``make bench``.

The results files are benchmarks/results.md (compiled) and results-pure.md
(pure Python). ``make bench`` runs this after both runs; ``--check`` exits 1
when a page's tables differ from the results files
(tests/test_benchmark_tables.py), so no page shows numbers no run produced.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BEGIN = "<!-- speed tables: written by benchmarks/readme_table.py from benchmarks/results*.md -->"
END = "<!-- end of speed tables -->"
DOCS = HERE.parent / "docs" / "benchmarks.md"
DOCS_BEGIN = "<!-- results: written by benchmarks/readme_table.py from benchmarks/results*.md -->"
DOCS_END = "<!-- end of results -->"
PEERS = ("django", "django-cached", "blinker", "psygnal", "psygnal-fast", "pydispatcher")


def _rows(path: Path) -> tuple[str, list[dict[str, str]]]:
    """The run's date and load, and each row: its ratio, target and peers (by column name)."""
    text = path.read_text(encoding="utf-8")
    date = re.search(r"^- Date: (.+)$", text, re.MULTILINE)
    load = re.search(r"load average before the run: ([0-9.]+)", text)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    versus = dict(re.findall(r"^- (.+?): .*blinker ([0-9.]+)", text, re.MULTILINE))
    rows = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        row = {name: cells[header.index(name)] for name in ("Scenario", "target", *PEERS)}
        # The first tocsin column is the ratio (the last one is the verdict).
        row["tocsin"] = cells[header.index("tocsin")]
        if "blinker" in row["target"] and row["Scenario"] in versus:
            row["tocsin"] += f" ({versus[row['Scenario']]}x blinker)"
        rows.append(row)
    when = f"{date.group(1) if date else '?'}, load average {load.group(1) if load else '?'}"
    return when, rows


def tables() -> str:
    """The README block: tocsin beside its peers (compiled run), then both of tocsin's modes."""
    compiled_when, compiled = _rows(HERE / "results.md")
    pure_when, pure = _rows(HERE / "results-pure.md")
    pure_by_name = {row["Scenario"]: row for row in pure}
    out = [BEGIN, "", "| Scenario | tocsin | " + " | ".join(PEERS) + " |", "|---" * (len(PEERS) + 2) + "|"]
    out += [
        f"| {r['Scenario']} | **{r['tocsin']}** | " + " | ".join(r[p] for p in PEERS) + " |" for r in compiled
    ]
    out += [
        "",
        f"tocsin in both modes (compiled: run of {compiled_when}; pure Python: run of {pure_when}):",
        "",
        "| Scenario | compiled | target | pure Python | target |",
        "|---|---|---|---|---|",
    ]
    for row in compiled:
        other = pure_by_name[row["Scenario"]]
        cells = (row["Scenario"], row["tocsin"], row["target"], other["tocsin"], other["target"])
        out.append("| " + " | ".join(cells) + " |")
    out += ["", END]
    return "\n".join(out)


def full_results() -> str:
    """The docs' block: each results file's header, table and per-peer lines, as written by the run."""
    out = [DOCS_BEGIN, ""]
    for title, name in (
        ("With the C accelerator (`tocsin.__speedups__` True)", "results.md"),
        ("Pure Python (`TOCSIN_NO_EXTENSIONS=1`)", "results-pure.md"),
    ):
        text = (HERE / name).read_text(encoding="utf-8")
        body = text[text.index("\n- Date:") :].strip()  # without the file's own title
        out += [f"### {title}", "", f"From `benchmarks/{name}`:", "", body, ""]
    out.append(DOCS_END)
    return "\n".join(out)


def main(argv: list[str]) -> int:
    stale = []
    pages = ((README, BEGIN, END, tables()), (DOCS, DOCS_BEGIN, DOCS_END, full_results()))
    for path, begin, end_marker, block in pages:
        text = path.read_text(encoding="utf-8")
        start, end = text.index(begin), text.index(end_marker) + len(end_marker)
        updated = text[:start] + block + text[end:]
        if updated != text:
            stale.append(path.name)
            if "--check" not in argv:
                path.write_text(updated, encoding="utf-8")
    if "--check" in argv and stale:
        print(
            f"{', '.join(stale)}: speed tables differ from benchmarks/results*.md: run make bench",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
