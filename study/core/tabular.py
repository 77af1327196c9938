"""A user's CSV file as a dataset: read with pandas, typed column by column, checked, and encoded on training rows.

The rules (each refusal is a ``BadInput`` naming the file, one line):

- a header row naming the columns (a first row of numbers only, or with a fraction, is refused: it is data);
- the label is the column named ``target``, else the last column; every other column is a feature;
- classification when the label is text, a boolean, or whole numbers with at most ``MAX_CLASSES`` distinct values
  (``3`` and ``3.0`` alike); otherwise regression. One class only, or a constant regression target, is refused;
- a feature is numeric when every value parses as a number (standardised with training statistics, the rule of the
  bundled sets), else categorical (one-hot encoded, categories fitted on the training rows; a category first seen
  in validation or test is all zeros). Booleans are categorical. A non-numeric column with more than
  ``MAX_CATEGORIES`` distinct values, or with more than half its rows distinct, is free text, not a category:
  refused (an identifier or a comment would otherwise become one column per row);
- a missing value (an empty field, ``NA``, ``nan``... as pandas reads them, a short row, or an infinite number) is
  refused, naming the column and the count, unless the caller asks for ``missing="drop"``: then rows with any
  missing value are dropped with one warning.

The file is read as text (every column a string) and typed here after missing rows are handled, so a column's type
does not depend on pandas' guess over rows that are then dropped. ``read`` is cached on the file's path, size and
modification time: a sweep loads the same file once per seed, and an edited file is read again.
"""
from __future__ import annotations

import functools
import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from study.errors import BadInput

MAX_CLASSES = 50  # whole-number labels with more distinct values are a quantity (regression), not classes
MAX_CATEGORIES = 50  # a non-numeric feature with more distinct values is free text (see the module's docstring)
LABEL = "target"
MISSING = ("refuse", "drop")
DIGEST_CHARS = 16  # of the sha256's hex digest: tells two files apart, short enough to read in MLflow's table
BOOLEANS = {"true", "false"}
INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Table:
    """A checked CSV file: its features (numeric columns as floats, categorical as text, in file order), its label
    (class indices 0..k-1 in the order of ``classes``, or floats) and what was found."""
    path: str
    digest: str
    features: pd.DataFrame
    y: np.ndarray
    task: str  # "classification" or "regression"
    label: str
    classes: tuple[str, ...]  # the label's values as text, sorted (numerically for numbers); () for regression
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    dropped: int  # rows dropped for missing values

    @property
    def summary(self) -> str:
        """One line for a person: rows, features, task."""
        kind = f"{len(self.classes)} classes" if self.task == "classification" else "regression"
        dropped = f", {self.dropped} rows with missing values dropped" if self.dropped else ""
        return (f"{len(self.y)} rows, {len(self.numeric)} numeric and {len(self.categorical)} categorical features, "
                f"label {self.label!r} ({kind}){dropped}")


def encoder(table: Table) -> ColumnTransformer:
    """The features' transform, unfitted: numeric columns standardised, categorical ones one-hot encoded (numeric
    columns first, then each categorical column's categories in sorted order). Fitted on the training rows only."""
    groups = [("numeric", StandardScaler(), list(table.numeric)),
              ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=float),
               list(table.categorical))]
    return ColumnTransformer([g for g in groups if g[2]], sparse_threshold=0.0)


def read(path: str, missing: str = "refuse") -> Table:
    """The file at ``path`` as a checked ``Table`` (see the module's docstring), or ``BadInput``."""
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {missing!r}")
    stat = _stat(path)
    return _read(str(path), stat.st_size, stat.st_mtime_ns, missing)


def digest(path: str) -> str:
    """The first ``DIGEST_CHARS`` hex digits of the sha256 of the file's bytes."""
    stat = _stat(path)
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


def _stat(path: str):
    p = Path(path)
    try:
        stat = p.stat()
    except FileNotFoundError:
        raise BadInput(str(path), "no such file") from None
    except OSError as error:
        raise BadInput(str(path), f"cannot be read: {error.strerror}") from None
    if not p.is_file():
        raise BadInput(str(path), "is not a file (a CSV file was expected)")
    return stat


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(_bytes(path)).hexdigest()[:DIGEST_CHARS]


def _bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise BadInput(path, f"cannot be read: {error.strerror}") from None


@functools.lru_cache(maxsize=16)
def _read(path: str, size: int, mtime_ns: int, missing: str) -> Table:
    content = _bytes(path)
    frame = _parse(path, content)
    label = LABEL if LABEL in frame.columns else frame.columns[-1]
    frame, dropped = _handle_missing(path, frame, missing)
    if len(frame) == 0:
        raise BadInput(path, "has no data rows below its header")
    y, task, classes = _label(path, frame[label])
    features = frame.drop(columns=[label])
    numeric, categorical = [], []
    for column in features.columns:
        kind = _kind(features[column])
        if kind == "number":
            numeric.append(column)
            features[column] = pd.to_numeric(features[column]).astype(float)
        else:
            if kind == "text":  # a boolean has two values: a category whatever the rows
                _refuse_free_text(path, column, features[column])
            categorical.append(column)
            features[column] = features[column].str.strip()
            if kind == "boolean":  # True, TRUE and true are one category
                features[column] = features[column].str.lower()
    return Table(path, hashlib.sha256(content).hexdigest()[:DIGEST_CHARS], features.reset_index(drop=True),
                 y, task, str(label), classes, tuple(map(str, numeric)), tuple(map(str, categorical)), dropped)


def _parse(path: str, content: bytes) -> pd.DataFrame:
    if b"\0" in content:
        raise BadInput(path, "not a CSV file: it holds binary data (NUL bytes)")
    try:
        with warnings.catch_warnings():  # a row longer than the header: pandas would drop its extra fields
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(content), dtype=str, index_col=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise BadInput(path, "not a CSV file: it is empty") from None
    except UnicodeDecodeError as error:
        raise BadInput(path, f"not a CSV file: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except pd.errors.ParserWarning:
        raise BadInput(path, "not a CSV file pandas can read: a row has more fields than the header") from None
    except (pd.errors.ParserError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInput(path, f"not a CSV file pandas can read: {first}") from None
    if frame.shape[1] < 2:
        raise BadInput(path, f"needs a label column and at least one feature column, separated by commas; found "
                             f"{frame.shape[1]} column ({', '.join(map(repr, frame.columns))})")
    numbers = [str(c) for c in frame.columns if _is_number(str(c))]
    # Names are words, or whole numbers at most (a DataFrame written without names has the header 0,1,2,...): a
    # first row of numbers only, or holding a fraction, is a row of data.
    if len(numbers) == frame.shape[1] or any(not INTEGER.fullmatch(c.strip()) for c in numbers):
        shown = ", ".join(numbers[:3]) + (", ..." if len(numbers) > 3 else "")
        raise BadInput(path, f"needs a header row naming its columns: the first row holds numbers ({shown})")
    return frame


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _kind(values: pd.Series) -> str:
    """"number", "boolean" or "text", from a column's (non-missing) values as text."""
    if values.str.strip().str.lower().isin(BOOLEANS).all():
        return "boolean"
    return "number" if pd.to_numeric(values, errors="coerce").notna().all() else "text"


def _handle_missing(path: str, frame: pd.DataFrame, missing: str) -> tuple[pd.DataFrame, int]:
    """The frame without missing values, and how many rows were dropped; refused when ``missing`` is "refuse"."""
    absent = frame.isna()
    for column in frame.columns:  # an infinite number is as unusable as none (a numeric column's text parsed)
        present = frame[column].dropna()
        if len(present) and _kind(present) == "number":
            absent[column] |= ~np.isfinite(pd.to_numeric(frame[column], errors="coerce").fillna(0.0))
    rows = absent.any(axis=1)
    if not rows.any():
        return frame, 0
    per_column = absent.sum()
    columns = [c for c in frame.columns if per_column[c]]
    if missing == "refuse":
        first, count = columns[0], int(per_column[columns[0]])
        others = f" (and {len(columns) - 1} other column{'s' * (len(columns) > 2)}; {int(rows.sum())} rows in all)" \
            if len(columns) > 1 else ""
        raise BadInput(path, f"column {first!r}: {count} row{'s' * (count > 1)} with a missing or infinite "
                             f"value{others}; fill them, or set missing_values=drop to drop such rows")
    warnings.warn(f"{path}: dropped {int(rows.sum())} of {len(frame)} rows with a missing or infinite value "
                  f"(columns {', '.join(map(repr, columns))})", UserWarning, stacklevel=2)
    return frame[~rows].reset_index(drop=True), int(rows.sum())


def _label(path: str, values: pd.Series) -> tuple[np.ndarray, str, tuple[str, ...]]:
    """(y, task, classes) by the module's rule."""
    kind = _kind(values)
    numbers = pd.to_numeric(values, errors="coerce") if kind == "number" else None
    whole = numbers is not None and bool((numbers == np.round(numbers)).all())
    distinct = values.str.strip().str.lower() if kind == "boolean" else values.str.strip()
    if kind == "number" and not (whole and numbers.nunique() <= MAX_CLASSES):
        if numbers.nunique() < 2:
            raise BadInput(path, f"column {values.name!r} (the label): a regression target with one value only "
                                 f"({numbers.iloc[0]:g} in all {len(values)} rows): nothing to learn")
        return numbers.to_numpy(float), "regression", ()
    if kind == "number":  # whole numbers: sorted as numbers, named as integers ("3" for 3.0)
        keys = numbers.astype(np.int64)
        order = np.unique(keys)
        y = np.searchsorted(order, keys.to_numpy())
        classes = tuple(str(v) for v in order)
    else:
        order = np.unique(distinct.to_numpy(str))
        y = np.searchsorted(order, distinct.to_numpy(str))
        classes = tuple(str(v) for v in order)
    if len(classes) < 2:
        raise BadInput(path, f"column {values.name!r} (the label): one class only ({classes[0]!r} in all "
                             f"{len(values)} rows): nothing to classify")
    return y.astype(np.int64), "classification", classes


def _refuse_free_text(path: str, column: str, values: pd.Series) -> None:
    distinct = values.str.strip().nunique()
    if distinct > MAX_CATEGORIES or distinct > len(values) / 2:
        raise BadInput(path, f"column {column!r}: text, not categorical: {distinct} distinct values in "
                             f"{len(values)} rows (a categorical column has at most {MAX_CATEGORIES}, and at most "
                             f"half its rows distinct); drop the column or encode it as numbers")
