"""HTML building blocks: plain string templates; every text that comes from a file goes through escape().

The page is self-contained: CSS inline, images as base64 data URIs, no scripts, no links out.
"""

from __future__ import annotations

import base64
from html import escape

MIME = {b"\x89PNG": "image/png", b"GIF8": "image/gif", b"RIFF": "image/webp"}

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 0 18px 40px;
       color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; }
img.px { image-rendering: pixelated; }
figure { display: inline-block; margin: 0 12px 12px 0; vertical-align: top; }
figcaption { font-size: 12px; color: #555; text-align: center; }
.note { background: #f4f4f4; border-left: 4px solid #aaa; padding: 6px 10px; }
.warn { background: #fff4e5; border-left: 4px solid #e69500; padding: 6px 10px; margin: 8px 0; }
.ok { background: #eaf7ea; border-left: 4px solid #3a3; padding: 6px 10px; }
.facts td:first-child { color: #555; }
footer { margin-top: 3em; color: #777; font-size: 12px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="postergen {version}">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
<footer>{footer}</footer>
</body>
</html>
"""


def page(title: str, sections: list[str], footer: str) -> str:
    """title and footer are plain text; sections are HTML."""
    from postergen import __version__

    return PAGE.format(title=escape(title), css=CSS, body="\n".join(sections), footer=escape(footer),
                       version=escape(__version__))


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{escape(anchor)}">\n<h2>{escape(title)}</h2>\n{body}\n</section>'


def data_uri(data: bytes) -> str:
    """PNG/GIF/WebP bytes -> data: URI (the type read from the bytes' signature)."""
    mime = MIME.get(data[:4])
    if mime is None:
        raise ValueError("not a PNG, GIF or WebP image")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img(data: bytes, alt: str, caption: str | None = None, width: int | None = None, pixelated: bool = False) -> str:
    """An embedded image, optionally in a <figure> with a caption; width in CSS pixels."""
    attrs = f' width="{width}"' if width else ""
    attrs += ' class="px"' if pixelated else ""
    tag = f'<img src="{data_uri(data)}" alt="{escape(alt)}"{attrs}>'
    if caption is None:
        return tag
    return f"<figure>{tag}<figcaption>{escape(caption)}</figcaption></figure>"


def table(rows: list[tuple[str, str]], header: tuple[str, str] | None = None, cls: str = "") -> str:
    """Two-column table of plain-text (name, value) pairs; values that look numeric align right."""
    head = f"<tr><th>{escape(header[0])}</th><th>{escape(header[1])}</th></tr>" if header else ""
    body = "".join(f'<tr><td>{escape(k)}</td><td{_num(v)}>{escape(v)}</td></tr>' for k, v in rows)
    cls_attr = f' class="{escape(cls)}"' if cls else ""
    return f"<table{cls_attr}>{head}{body}</table>"


def details(summary: str, body: str) -> str:
    return f"<details><summary>{escape(summary)}</summary>\n{body}\n</details>"


def para(text: str, cls: str = "") -> str:
    """A paragraph of plain text (cls: note, warn or ok for a coloured box)."""
    cls_attr = f' class="{escape(cls)}"' if cls else ""
    return f"<p{cls_attr}>{escape(text)}</p>"


def code_note(before: str, command: str, after: str = "") -> str:
    """A note with a command in <code>: 'before <code>command</code> after'."""
    return f'<p class="note">{escape(before)}<code>{escape(command)}</code>{escape(after)}</p>'


def _num(text: str) -> str:
    try:
        float(text)
    except ValueError:
        return ""
    return ' class="num"'
