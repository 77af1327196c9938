"""Blocks to Markdown (GitHub flavour): figures as files beside the document, tables as pipe tables."""
from __future__ import annotations

from study.report.document.blocks import Bullets, Code, Details, Figure, Heading, Paragraph, Table, numeric_columns


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(frame) -> str:
    header = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("--:" if numeric else "---" for numeric in numeric_columns(frame)) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render(blocks, depth: int = 0) -> str:
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            source = f"(`tables/{block.csv}.csv`)" if block.csv else ""
            caption = " ".join(part for part in (f"*{block.shown_caption}*", source) if part)
            out.append((caption + "\n\n" if caption else "") + table(block.frame))
        elif isinstance(block, Figure):
            out.append(f"![{block.caption}](figures/{block.name}.png)\n\n*{block.caption}*" if block.caption
                       else f"![{block.name}](figures/{block.name}.png)")
        elif isinstance(block, Code):
            out.append("```\n" + block.text.rstrip("\n") + "\n```")
        elif isinstance(block, Details):
            out.append("#" * block.level + " " + block.summary)
            out.append(render(block.blocks, depth + 1).rstrip("\n"))
        else:
            raise TypeError(f"unknown block {type(block).__name__}")
    return "\n\n".join(out) + "\n"
