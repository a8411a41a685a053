"""The markup of hvae's report pages: one self-contained HTML file per page, with relative links to
its pictures, MIDI and audio, so a report folder can be moved or served as it is."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import quote

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1240px;
       margin: 1.5em auto; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; font-size: .85em; }
.wide { overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } .text { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; display: block; }
figure { margin: 1em 0; } figcaption { font-size: .9em; color: #444; margin-top: .3em; }
audio { height: 2.2em; vertical-align: middle; margin-right: 1em; }
.meta { color: #555; } .forced { color: #a00; font-weight: bold; }
.note { color: #444; background: #f7f7ee; border-left: 3px solid #cc9; padding: .4em .8em; }
.media a { margin-right: 1em; }
"""


def escape(text: object) -> str:
    return html.escape(str(text))


def relative(path: Path, page: Path) -> str:
    """``path`` as a URL relative to the page file ``page`` (forward slashes, characters quoted)."""
    return quote(Path(os.path.relpath(path, page.parent)).as_posix())


def page(title: str, body: Iterable[str]) -> str:
    """A whole HTML document."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], text_columns: int = 1) -> str:
    """A table of escaped cells: the first ``text_columns`` columns left-aligned, the others (numbers) right."""
    align = lambda k: " class=\"text\"" if k < text_columns else ""
    head = "".join(f"<th{align(k)}>{escape(h)}</th>" for k, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{align(k)}>{escape(c)}</td>" for k, c in enumerate(row)) + "</tr>\n"
                   for row in rows)
    return (f"<div class=\"wide\"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"
            f"</div>")


def figure(src: str, alt: str, caption: str = "", extra: str = "") -> str:
    """A picture with a caption; ``extra`` is markup shown under it (links, audio players)."""
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    extra_html = f"<div class=\"media\">{extra}</div>" if extra else ""
    return f"<figure><img src=\"{src}\" alt=\"{escape(alt)}\">{caption_html}{extra_html}</figure>"


def link(href: str, text: str) -> str:
    return f"<a href=\"{href}\">{escape(text)}</a>"


def audio(src: str, label: str) -> str:
    """An audio player for a WAV, with its label."""
    return f"<span>{escape(label)}: <audio controls preload=\"none\" src=\"{src}\"></audio></span>"
