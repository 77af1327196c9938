"""Blocks to one self-contained HTML page: inline CSS, figures as base64 data URIs, no script, nothing fetched."""
from __future__ import annotations

import base64
import html
import re

from study.report.document.blocks import Bullets, Code, Details, Figure, Heading, Paragraph, Table, numeric_columns

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 1.2rem 4rem; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { margin-top: 1.6rem; } code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; font-size: .8rem; }
table { border-collapse: collapse; margin: .4rem 0 1.2rem; font-size: .82rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .22rem .55rem; text-align: left; vertical-align: top; }
th.num, td.num { text-align: right; white-space: nowrap; } th { background: #fafafa; }
.table-wrap { overflow-x: auto; } .caption { color: #555; font-size: .85rem; margin: .8rem 0 .2rem; }
figure { margin: 1rem 0 1.5rem; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .85rem; } details { margin: .5rem 0; }
summary { cursor: pointer; font-weight: 600; padding: .3rem 0; }
nav { background: #f7f7f9; padding: .6rem 1rem; border-radius: 6px; font-size: .9rem; display: flex;
      flex-wrap: wrap; gap: .25rem .9rem; }
nav a { white-space: nowrap; }
"""


def inline(text: str) -> str:
    """Escape, then turn **bold** and `code` into tags."""
    escaped = html.escape(str(text), quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def table(frame) -> str:
    align = [' class="num"' if numeric else "" for numeric in numeric_columns(frame)]
    head = "".join(f"<th{a}>{inline(c)}</th>" for a, c in zip(align, frame.columns))
    rows = "".join("<tr>" + "".join(f"<td{a}>{inline(v)}</td>" for a, v in zip(align, row)) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def render_blocks(blocks) -> str:
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f'<h{block.level} id="{block.anchor}">{inline(block.text)}</h{block.level}>')
        elif isinstance(block, Paragraph):
            out.append(f"<p>{inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            source = f" <code>tables/{html.escape(block.csv)}.csv</code>" if block.csv else ""
            caption = f'<p class="caption">{inline(block.shown_caption)}{source}</p>'
            out.append(caption + table(block.frame))
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            alt = html.escape(block.caption or block.name)
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                       f"<figcaption>{inline(block.caption)}</figcaption></figure>")
        elif isinstance(block, Code):
            out.append(f"<pre>{html.escape(block.text)}</pre>")
        elif isinstance(block, Details):
            opened = " open" if block.open else ""
            out.append(f"<details{opened}><summary>{inline(block.summary)}</summary>{render_blocks(block.blocks)}"
                       f"</details>")
        else:
            raise TypeError(f"unknown block {type(block).__name__}")
    return "\n".join(out)


def render(blocks, title: str) -> str:
    sections = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    nav = "<nav>" + "".join(f'<a href="#{h.anchor}">{inline(h.text)}</a>' for h in sections) + "</nav>"
    body = render_blocks(blocks)
    first_heading = body.find("</h1>")
    if first_heading >= 0:  # the contents go right under the title
        cut = first_heading + len("</h1>")
        body = body[:cut] + "\n" + nav + body[cut:]
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<link rel="icon" href="data:,">\n'  # no favicon request: the page fetches nothing
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
            f"</body>\n</html>\n")
