"""HTML building blocks and the page shell: one self-contained document, no external URL.

Every value passes through :func:`html.escape`; styles and the small script are inline.
The script is progressive enhancement: without it every slot panel is shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

# The slot picker shows one panel at a time. On load it also records how many inline
# images the browser decoded (data-images-ok of data-images-total on <body>), which the
# headless-Chromium test reads back.
_SCRIPT = """
(function () {
  var panels = Array.prototype.slice.call(document.querySelectorAll("[data-slot-panel]"));
  var buttons = Array.prototype.slice.call(document.querySelectorAll("[data-slot-button]"));
  function show(slot) {
    panels.forEach(function (panel) {
      panel.hidden = slot !== "all" && panel.getAttribute("data-slot-panel") !== slot;
    });
    buttons.forEach(function (button) {
      var on = button.getAttribute("data-slot-button") === slot;
      button.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      show(button.getAttribute("data-slot-button"));
    });
  });
  var picker = document.getElementById("slot-picker");
  if (picker && panels.length) {
    picker.hidden = false;
    show(picker.getAttribute("data-initial"));
  }
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var decoded = images.filter(function (image) {
      return image.complete && image.naturalWidth > 0;
    });
    document.body.setAttribute("data-images-total", String(images.length));
    document.body.setAttribute("data-images-ok", String(decoded.length));
  });
})();
"""

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1d;
  margin: 0 auto; max-width: 1260px; padding: 0 1.2rem 3rem; background: #fff; }
h1 { font-size: 1.6rem; margin: 1.2rem 0 0.2rem; }
h2 { font-size: 1.25rem; border-bottom: 2px solid #ddd; padding-bottom: 0.2rem;
  margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin: 0.8rem 0 0.3rem; }
.sub { color: #555; margin: 0 0 1rem; }
table { border-collapse: collapse; font-size: 0.86rem; margin: 0.4rem 0 1rem; }
th, td { border: 1px solid #d6d6d6; padding: 0.15rem 0.5rem; text-align: right; }
th { background: #f2f2f2; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
table.facts td:first-child { text-align: left; color: #444; }
.scroll { max-height: 32rem; overflow: auto; display: inline-block; max-width: 100%; }
figure { margin: 0.4rem 0; width: fit-content; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
/* As wide as the image, never wider: the caption wraps instead of widening the figure. */
figcaption { font-size: 0.82rem; color: #555; width: 0; min-width: 100%; }
.figures { display: flex; flex-wrap: wrap; gap: 0.8rem; align-items: flex-start; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.4rem 0.8rem;
  margin: 0.6rem 0; }
.ok { color: #1b7f2a; font-weight: 600; }
.bad { color: #b00020; font-weight: 600; }
#slot-picker { margin: 0.4rem 0 0.8rem; }
#slot-picker button { font: inherit; font-size: 0.85rem; margin: 0 0.2rem 0.3rem 0;
  padding: 0.15rem 0.55rem; border: 1px solid #999; background: #fff; border-radius: 3px;
  cursor: pointer; }
#slot-picker button.constrained { border-color: #c0392b; }
#slot-picker button[aria-pressed="true"] { background: #333; color: #fff; }
.slot-panel { border-top: 1px solid #eee; padding-top: 0.4rem; }
footer { margin-top: 2.5rem; font-size: 0.8rem; color: #666; }
"""
_TEXT_CLASS = ' class="text"'
_CONSTRAINED_CLASS = ' class="constrained"'


def number(value: float | int | None, digits: int = 3) -> str:
    """Format a number for a table cell; ``None``, NaN and infinities become a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    text_columns: Sequence[int] = (),
    css_class: str = "",
    scroll: bool = False,
) -> str:
    """Return an HTML table of already formatted cells (escaped here)."""
    text = set(text_columns)

    def cells(values: Sequence[str], tag: str) -> str:
        return "".join(
            f"<{tag}{_TEXT_CLASS if k in text else ''}>{escape(v)}</{tag}>"
            for k, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    klass = f' class="{escape(css_class)}"' if css_class else ""
    head = f"<thead><tr>{cells(header, 'th')}</tr></thead>"
    markup = f"<table{klass}>{head}<tbody>{body}</tbody></table>"
    return f'<div class="scroll">{markup}</div>' if scroll else markup


def facts(rows: Iterable[tuple[str, str]]) -> str:
    """Return a two-column table of labels and values."""
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts"><tbody>{body}</tbody></table>'


def image(data_uri: str, alt: str, caption: str, *, css_class: str = "") -> str:
    """Return a figure with an inline image (a ``data:`` URI, never a link)."""
    if not data_uri.startswith("data:image/"):
        raise ValueError("only inline data: images keep the report self-contained")
    klass = f' class="{escape(css_class)}"' if css_class else ""
    return (
        f'<figure{klass}><img src="{data_uri}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def note(text: str) -> str:
    """Return a highlighted remark."""
    return f'<p class="note">{escape(text)}</p>'


def paragraph(text: str) -> str:
    """Return a plain paragraph."""
    return f"<p>{escape(text)}</p>"


def heading(text: str) -> str:
    """Return a sub-heading inside a section."""
    return f"<h3>{escape(text)}</h3>"


def section(anchor: str, title: str, body: str) -> str:
    """Return a top-level section with a heading."""
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>{body}</section>'


def slot_picker(slots: Sequence[int], initial: int, constrained: set[int]) -> str:
    """Return buttons that show one slot panel at a time (hidden until the script runs)."""
    buttons = "".join(
        f'<button type="button" data-slot-button="{s}"'
        f"{_CONSTRAINED_CLASS if s in constrained else ''}>{s}</button>"
        for s in slots
    )
    buttons += '<button type="button" data-slot-button="all">all</button>'
    return f'<div id="slot-picker" data-initial="{initial}" hidden>slot: {buttons}</div>'


def slot_panel(slot: int, body: str) -> str:
    """Return the panel of one slot, shown by the picker."""
    return f'<div class="slot-panel" data-slot-panel="{slot}" id="slot-{slot}">{body}</div>'


def page(title: str, subtitle: str, body: str, footer: str) -> str:
    """Return the whole document."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>{body}'
        f"<footer>{footer}</footer><script>{_SCRIPT}</script></body></html>\n"
    )
