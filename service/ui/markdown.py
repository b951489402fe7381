"""Item text (stems, options, rationales) as safe HTML.

Two layers: markdown-it-py's ``js-default`` preset leaves raw HTML in the source as text
(``html=False``) and refuses ``javascript:``/``vbscript:``/``data:`` links; nh3 (ammonia) then
keeps only its allow-list of tags and attributes, so nothing with a behaviour survives even if
the first layer changes. Everything else in the templates is escaped by Jinja2's autoescape,
and the pages' Content-Security-Policy forbids inline scripts as a last line.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

_MARKDOWN = MarkdownIt("js-default")


def render_markdown(text: str | None) -> Markup:
    """Block markdown (paragraphs, lists, tables, code) as sanitised HTML."""
    return Markup(nh3.clean(_MARKDOWN.render(text or "")))


def render_markdown_inline(text: str | None) -> Markup:
    """Inline markdown (emphasis, code, links) without a wrapping paragraph, as sanitised HTML."""
    return Markup(nh3.clean(_MARKDOWN.renderInline(text or "")))
