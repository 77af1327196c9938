"""Whether a figure can be read: the checks every figure the study draws must pass, and the hook that shows them
the real figures.

``problems(fig)`` lays the figure out on its own canvas and lists what a reader could not read: two texts drawn
over each other (tick labels, titles, axis labels, legend entries, annotations), a text cut off at the figure's
edge, a legend drawn over another panel, an axis with a label or tick labels but fewer than two labelled ticks (a
scale nobody can read; an axis whose ticks name things, one optimizer or one parameter, is a list, not a scale),
and a visible panel with nothing drawn in it. Blank texts are ignored, and so is an axis deliberately left bare
(no ticks, no label: a colour bar's short side, a diagram with no y scale). Texts are compared by their
axis-aligned boxes, so rotated tick labels that lean over each other count as overlapping: the report's figures
lay names out horizontally instead.

Every place that saves a figure (the report's ``png_bytes``, the lecture's and a cell's ``_save``) calls
``saving(fig)`` first; ``watch()`` collects those figures, so a test checks exactly what is written, not a copy.
Nothing is collected outside ``watch()``.
"""
from __future__ import annotations

import contextlib
import contextvars
import itertools

_watchers: contextvars.ContextVar[tuple] = contextvars.ContextVar("figure_watchers", default=())
SLACK = 1.0  # pixels: anti-aliasing makes touching boxes overlap by a fraction of a pixel


@contextlib.contextmanager
def watch():
    """Collect every figure saved inside the block, in order: ``with watch() as drawn: ...``."""
    drawn: list = []
    token = _watchers.set(_watchers.get() + (drawn,))
    try:
        yield drawn
    finally:
        _watchers.reset(token)


def saving(fig) -> None:
    """Called with each figure just before it is saved: hands it to every active ``watch()``."""
    for drawn in _watchers.get():
        drawn.append(fig)


def _shown(text) -> bool:
    return text.get_visible() and bool(text.get_text().strip())


def _in_view(axis, location: float) -> bool:
    low, high = sorted(axis.get_view_interval())
    span = max(high - low, 1e-300)
    return low - 1e-9 * span <= location <= high + 1e-9 * span


def tick_labels(axis) -> list:
    """The tick labels an axis draws: visible, not blank, at a tick inside the view."""
    out = []
    for locations, ticks in ((axis.get_majorticklocs(), axis.get_major_ticks()),
                             (axis.get_minorticklocs(), axis.get_minor_ticks())):
        for location, tick in zip(locations, ticks):
            if _in_view(axis, location):
                out += [t for t in (tick.label1, tick.label2) if _shown(t)]
    return out


def _axes_of(ax) -> list:
    return [a for a in (getattr(ax, name, None) for name in ("xaxis", "yaxis", "zaxis")) if a is not None]


def legends(fig) -> list:
    """Every visible legend: the figure's and each visible panel's."""
    found = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_visible()]
    return [legend for legend in found if legend is not None and legend.get_visible()]


def _texts(fig) -> list[tuple[str, object, object]]:
    """(what, text, owning legend or None) for every text element drawn."""
    found = [("figure text", t, None) for t in fig.texts if _shown(t)]
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = f"panel {i + 1}"
        if _shown(ax.title):  # the centre title: the study sets no left or right ones
            found.append((f"{name} title", ax.title, None))
        found += [(f"{name} text", t, None) for t in ax.texts if _shown(t)]
        if ax.axison:
            for axis in _axes_of(ax):
                if _shown(axis.label):
                    found.append((f"{name} {axis.axis_name}-label", axis.label, None))
                found += [(f"{name} {axis.axis_name}-tick {t.get_text()!r}", t, None) for t in tick_labels(axis)]
    for legend in legends(fig):
        found += [(f"legend entry {t.get_text()!r}", t, legend) for t in [*legend.get_texts(), legend.get_title()]
                  if _shown(t)]
    return found


def _overlap(a, b) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > SLACK) and (min(a.y1, b.y1) - max(a.y0, b.y0) > SLACK)


def _empty(ax) -> bool:
    drawn = ax.lines + ax.collections + ax.images + ax.patches + ax.texts + ax.tables
    return not any(a.get_visible() for a in drawn) and ax.get_legend() is None


def problems(fig) -> list[str]:
    """What makes ``fig`` hard to read, one line each; empty when it can be read."""
    # imported here: the hook above is imported by every module that saves figures, matplotlib or not yet
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.ticker import FixedFormatter

    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)  # lay everything out (ticks, legends, layout engines) as saving would
    out = []
    page = fig.bbox
    texts = [(what, text, legend, text.get_window_extent(renderer)) for what, text, legend in _texts(fig)]
    for what, _, _, box in texts:
        if box.x0 < page.x0 - SLACK or box.y0 < page.y0 - SLACK or box.x1 > page.x1 + SLACK \
                or box.y1 > page.y1 + SLACK:
            out.append(f"{what} falls outside the figure")
    for (what_a, _, leg_a, a), (what_b, _, leg_b, b) in itertools.combinations(texts, 2):
        if leg_a is not None and leg_a is leg_b:
            continue  # one legend lays its own entries out
        if _overlap(a, b):
            out.append(f"{what_a} overlaps {what_b}")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    for legend in legends(fig):
        box = legend.get_window_extent(renderer)
        for ax in panels:
            if ax is not legend.axes and ax.axison and _overlap(box, ax.get_window_extent(renderer)):
                out.append(f"a legend covers panel {fig.axes.index(ax) + 1}")
    for ax in panels:
        name = f"panel {fig.axes.index(ax) + 1}"
        if _empty(ax):
            out.append(f"{name} is empty")
        if not ax.axison:
            continue
        for axis in _axes_of(ax):
            labelled = tick_labels(axis)
            if isinstance(axis.get_major_formatter(), (FixedFormatter, StrCategoryFormatter)):
                continue  # ticks that name things (optimizers, parameters): one name is a whole list
            if (labelled or _shown(axis.label)) and len(labelled) < 2:
                out.append(f"{name} {axis.axis_name}-axis has {len(labelled)} labelled tick(s)")
    return out
