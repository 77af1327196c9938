"""Axes that read: a distance above the best on a log axis no wider than its data, and log tick labels in plain
numbers.

A distance above the dataset's best (in loss units: the paired seed-to-seed SD of validation loss) is never
negative, so it gets no negative half: it is drawn on a log axis from the decade below the smallest distance, but
not below FLOOR, a tenth of a loss unit (closer than that is noise), up to the decade above the largest, at most
CEILING. A value below the floor is
drawn on it and one above the ceiling on that, each with its own marker, and the axis label says so: a clipped
point is visibly clipped, not moved. Symmetric-log axes, which printed -10^0 over 10^-1 and spanned 13 decades,
are gone from the report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

FLOOR = 0.1  # loss units: closer to the best than this is within the noise
CEILING = 1e4  # loss units: beyond this a cell is simply far worse, and the axis would only get longer
BELOW, ABOVE = "v", "^"  # the markers of points drawn on the floor / the ceiling


def plain(value: float) -> str:
    """0.001, 0.1, 1, 10, 1000, then 1e4, 1e-5: a short tick label without mathtext."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class Span:
    """The ends of a distance axis, in loss units."""
    bottom: float
    top: float

    @property
    def note(self) -> str:
        """What the axis label says of the floor: only a floor at FLOOR clips anything."""
        return f"(below {FLOOR:g} drawn on it)" if self.bottom <= FLOOR else ""


def span(values) -> Span:
    """The axis for these distances: from the decade below the smallest finite one (not below FLOOR) to the
    decade above the largest (not above CEILING), at least one decade."""
    finite = np.asarray(values, float).ravel()
    finite = finite[np.isfinite(finite)]
    positive = finite[finite > 0]
    smallest = float(positive.min()) if positive.size and positive.size == finite.size else FLOOR
    largest = float(finite.max()) if finite.size else 1.0
    bottom = max(FLOOR, 10.0 ** math.floor(math.log10(max(smallest, FLOOR))))
    top = min(CEILING, 10.0 ** math.ceil(math.log10(max(largest, FLOOR) * 1.001)))
    return Span(bottom, float(max(top, 10 * bottom)))


def clip(values, ends: Span) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values held within the span, which were below its bottom, which above its top)."""
    v = np.asarray(values, float)
    with np.errstate(invalid="ignore"):
        below, above = v < ends.bottom, v > ends.top
    return np.clip(v, ends.bottom, ends.top), below, above


def diverged_row(ends: Span) -> float:
    """Where runs that diverged are drawn: in a band above the top (``distance_axis(headroom=True)``)."""
    return ends.top * 2.2


def distance_axis(ax, ends: Span, label: str, headroom: bool = False) -> None:
    """A log y axis over the span with a labelled tick per decade (every other one past five decades);
    ``headroom``: a band above the top for the diverged runs' row."""
    ax.set_yscale("log")
    ax.set_ylim(ends.bottom / 1.25, ends.top * (3.5 if headroom else 1.25))
    decades = range(int(round(math.log10(ends.bottom))), int(round(math.log10(ends.top))) + 1)
    step = 1 if len(decades) <= 5 else 2
    ax.yaxis.set_major_locator(FixedLocator([10.0 ** d for d in decades][::step]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: plain(v)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel(label)


def log_ticks(axis, low: float, high: float, base: float = 10.0, most: int = 6) -> None:
    """Plain labelled ticks on a log axis from ``low`` to ``high``: powers of two (base 2); else the decades when
    three or more fall inside, 1, 2, 5 per decade when fewer, four evenly spaced ones when even those give fewer
than two (a range under a factor of five); thinned
    to at most ``most`` so that their labels never run into each other."""
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        return
    first, last = math.floor(math.log(low, base)), math.ceil(math.log(high, base))
    inside = lambda ticks: [t for t in ticks if low * 0.999 <= t <= high * 1.001]  # noqa: E731
    if base == 2:
        ticks = inside([2.0 ** k for k in range(first, last + 1)])
    else:
        ticks = inside([10.0 ** d for d in range(first, last + 1)])
        if len(ticks) < 3:
            ticks = inside([s * 10.0 ** d for d in range(first, last + 1) for s in (1, 2, 5)])
        if len(ticks) < 2:  # less than a factor of 5: evenly spaced on the log axis, two significant digits
            ticks = sorted({float(f"{v:.2g}") for v in np.geomspace(low, high, 4)})
    stride = max(1, math.ceil(len(ticks) / most))
    axis.set_major_locator(FixedLocator(ticks[::stride]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: plain(v)))
    axis.set_minor_locator(NullLocator())


def mark_clipped(ax, x, below, above, ends: Span, color) -> None:
    """Draw the clipped points on the floor (down triangles) and the ceiling (up triangles)."""
    x = np.asarray(x, float)
    if below.any():
        ax.scatter(x[below], np.full(int(below.sum()), ends.bottom), marker=BELOW, s=12, color=color, lw=0)
    if above.any():
        ax.scatter(x[above], np.full(int(above.sum()), ends.top), marker=ABOVE, s=12, color=color, lw=0)
