"""The report as a list of blocks, rendered twice: to Markdown (render_md) and to one HTML page (render_html).

Text may use two inline marks, **bold** and `code`; everything else is plain and escaped by the renderer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Heading:
    text: str
    level: int = 2

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.text.lower()).strip("-")


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    frame: pd.DataFrame  # already formatted: every cell a string
    caption: str = ""
    csv: str = ""  # the tables/*.csv that holds its numbers
    primary: bool = False  # part of the primary families (conf/report.yaml); every other table is exploratory

    @property
    def shown_caption(self) -> str:
        """The caption as shown: every table says whether it is primary or exploratory (multiplicity is
        controlled across the primary families only)."""
        return f"{'Primary' if self.primary else 'Exploratory'}. {self.caption}".strip()


@dataclass
class Figure:
    name: str  # file name under figures/, without .png
    png: bytes = field(repr=False)
    caption: str = ""


@dataclass
class Code:
    text: str


@dataclass
class Details:
    """A collapsible section in HTML (closed unless ``open``), a plain subsection in Markdown."""

    summary: str
    blocks: list
    open: bool = False
    level: int = 3  # the heading level it becomes in Markdown


def walk(blocks):
    """Every block, depth first (Details contents included)."""
    for block in blocks:
        yield block
        if isinstance(block, Details):
            yield from walk(block.blocks)


_NUMBER = re.compile(r"^([-+]?[0-9][0-9.,]*(e-?[0-9]+)?%?x?( .*)?|never|n/a|)$")


def numeric_columns(frame: pd.DataFrame) -> list[bool]:
    """Which columns hold numbers (right-aligned); the first column is always a label."""
    flags = []
    for i, column in enumerate(frame.columns):
        values = [str(v) for v in frame[column]]
        flags.append(i > 0 and all(_NUMBER.match(v) for v in values) and any(v[:1].isdigit() for v in values))
    return flags
