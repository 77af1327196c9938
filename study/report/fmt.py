"""Number formatting for the report: one place, fixed rules, so every rebuild prints the same characters."""
from __future__ import annotations

import math


def num(x, digits: int = 3, zeros: bool = False) -> str:
    """A float with ``digits`` significant digits; 'n/a' for NaN, 'never' for +inf. ``zeros`` keeps trailing
    zeros (0.300 beside 0.293 in a table column); prose drops them (eta 0.01, not 0.0100)."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "never" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:  # 1,078 rather than 1.08e3: large values here are counts and seconds
        return f"{x:,.0f}"
    text = f"{x:#.{digits}g}" if zeros else f"{x:.{digits}g}"
    mantissa, _, exponent = text.partition("e")
    mantissa = mantissa.rstrip(".")
    return mantissa + (f"e{int(exponent)}" if exponent else "")


def cell(x, digits: int = 3) -> str:
    """A number in a table column: trailing zeros kept so the column lines up."""
    return num(x, digits, zeros=True)


def count(x) -> str:
    """An integer count with thousands separators; 'never' for inf, 'n/a' for NaN."""
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "never"
    return f"{int(round(x)):,}"


def p(value) -> str:
    """A p-value as people read them: 'p = 0.031', 'p < 0.001'."""
    value = float(value)
    if math.isnan(value):
        return "p = n/a"
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def prob(value) -> str:
    return "n/a" if math.isnan(float(value)) else f"{float(value):.2f}"


def pct(value, digits: int = 1) -> str:
    return "n/a" if math.isnan(float(value)) else f"{100 * float(value):+.{digits}f}%"


def share(value) -> str:
    return "n/a" if math.isnan(float(value)) else f"{100 * float(value):.0f}%"


def interval(mean, low, high, digits: int = 3) -> str:
    if math.isnan(float(low)):
        return cell(mean, digits)
    return f"{cell(mean, digits)} [{cell(low, digits)}, {cell(high, digits)}]"


def names(items) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
