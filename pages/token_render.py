"""Token highlighting as an HTML string: one pure function that pages and exports share.

Every token and every number is escaped; the markup uses inline styles only (no scripts,
no external CSS or fonts), so it renders the same offline and cannot inject anything.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

VISIBLE_WHITESPACE = {"\n": "↵", "\t": "⇥", "\r": "␍"}


def _visible(token: str) -> str:
    shown = "".join(VISIBLE_WHITESPACE.get(ch, ch) for ch in token)
    shown = "".join(ch if ch.isprintable() or ch == " " else f"\\x{ord(ch):02x}" for ch in shown)
    return html.escape(shown, quote=True).replace(" ", "&nbsp;") or "&#8203;"


def render_tokens(
    tokens: Sequence[str],
    values: Sequence[float],
    scale: float,
    mark: int | None = None,
    color: tuple[int, int, int] = (209, 73, 91),
) -> str:
    """Tokens shaded by value / scale (hover shows the value); the `mark` index outlined."""
    if len(tokens) != len(values):
        raise ValueError("one value per token")
    spans = []
    for index, (token, value) in enumerate(zip(tokens, values, strict=True)):
        alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, float(value) / scale))
        style = f"background-color:rgba({color[0]},{color[1]},{color[2]},{alpha:.3f});"
        if index == mark:
            style += "outline:2px solid #1b2a24;border-radius:2px;"
        title = html.escape(f"{float(value):.3f}", quote=True)
        spans.append(
            f'<span class="ul-tok" style="{style}" title="{title}">{_visible(token)}</span>'
        )
    return (
        '<div class="ul-tokens" style="font-family:monospace;line-height:1.9;white-space:normal;">'
        + "".join(spans)
        + "</div>"
    )
