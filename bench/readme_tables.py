"""Puts the reproduction suite's tables into the README, as the runner wrote them.

    python -m bench.readme_tables table5 table6 table7 table8 fig5 baselines [--results DIR] [--readme README.md]

The README's block between ``<!-- reproduce tables`` and
``<!-- end reproduce tables -->`` opens with prose written by hand (what came
out, against the paper's orderings); from its first ``####`` heading on, it is
each experiment's ``table.md`` in the order given, headings one level down.
Only that second part is rewritten.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

START, END = "<!-- reproduce tables", "<!-- end reproduce tables -->"


def tables_block(results: pathlib.Path, experiments: list[str]) -> str:
    parts = []
    for name in experiments:
        table = results / name / "table.md"
        if not table.exists():
            raise FileNotFoundError(f"{table}: no table; run `python -m bench.reproduce {name}` first")
        parts.append(re.sub(r"^###", "####", table.read_text().strip(), flags=re.M))
    return "\n\n".join(parts) + "\n"


def replace_tables(readme: str, block: str) -> str:
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no '{START} ... {END}' block")
    first_table = readme.find("\n####", start, end)
    if first_table < 0:
        raise ValueError("the README's reproduce block has no '####' table heading to start from")
    return readme[:first_table + 1] + block + readme[end:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--results", default="bench/results/reproduce/synthetic-tiny")
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args(argv)
    path = pathlib.Path(args.readme)
    try:
        path.write_text(replace_tables(path.read_text(), tables_block(pathlib.Path(args.results), args.experiments)))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
