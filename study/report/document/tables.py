"""The machine-readable side of the report: every number shown lands in a tables/*.csv, written stably."""
from __future__ import annotations

import pandas as pd

FLOAT_FORMAT = "%.10g"  # enough digits to recompute anything shown; fixed, so rebuilds are byte-identical


class Tables:
    """Named CSV tables collected while the document is built."""

    def __init__(self):
        self.frames: dict[str, pd.DataFrame] = {}

    def add(self, name: str, frame: pd.DataFrame) -> str:
        if name in self.frames:
            raise ValueError(f"table {name!r} added twice")
        self.frames[name] = frame
        return name

    def to_csv(self, name: str) -> bytes:
        frame = self.frames[name].copy()
        for column in frame.columns:  # inf as text; bools as 0/1 so spreadsheets read them alike
            if frame[column].dtype == bool:
                frame[column] = frame[column].astype(int)
        text = frame.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n", na_rep="")
        return text.encode("utf-8")


def matrix(cells: pd.DataFrame, rows: list[str], columns: list[str], value, row_key="optimizer",
           column_key="batch_size", first_column: str = "optimizer") -> pd.DataFrame:
    """A display matrix: one row per ``rows`` entry, one column per ``columns`` entry, cells formatted by
    ``value(row_of_cells) -> str`` ('' where the cell is missing)."""
    lookup = {(r[row_key], r[column_key]): r for r in cells.to_dict("records")}
    out = []
    for r in rows:
        line = {first_column: r}
        for c in columns:
            line[c] = value(lookup[(r, c)]) if (r, c) in lookup else ""
        out.append(line)
    return pd.DataFrame(out)

