"""Small inline-SVG charts (grouped bars, horizontal bars, lines, stacked areas, interval plot), no JavaScript.

Generated in Python so the HTML report is one self-contained file that renders offline in any browser. Every
data mark carries ``class="mark"`` (the report's self-check and the tests count them); every axis has a title
with its unit (``class="axis-title"``). Counts are labelled as integers, other values with two decimals. A
chart scales down with the page (``width="100%"`` up to its natural width), so the report reads at 700 px.
Text is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
W, H = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 150, 20, 40


def _svg(body: list[str], height: int = H, label: str = "") -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="100%" '
        f'style="max-width:{W}px;height:auto" role="img" aria-label="{escape(label)}">' + "".join(body) + "</svg>"
    )


def num(value: float) -> str:
    """A label: an integral value as an integer ("6", not "6.00"), anything else with two decimals."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _titles(x_title: str, y_title: str, height: int, x_mid: float) -> list[str]:
    out = []
    if x_title:
        out.append(
            f'<text class="axis-title" x="{x_mid:.1f}" y="{height - 4}" font-size="11" text-anchor="middle">'
            f"{escape(x_title)}</text>"
        )
    if y_title:
        y_mid = TOP + (height - TOP - BOTTOM) / 2
        out.append(
            f'<text class="axis-title" x="12" y="{y_mid:.1f}" font-size="11" text-anchor="middle" '
            f'transform="rotate(-90 12 {y_mid:.1f})">{escape(y_title)}</text>'
        )
    return out


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    for i, name in enumerate(names):
        y = TOP + 16 * i
        colour = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{W - RIGHT + 12}" y="{y}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{W - RIGHT + 26}" y="{y + 9}" font-size="11">{escape(str(name))[:22]}</text>')
    return out


def _axis(y_max: float, height: int) -> list[str]:
    out = [f'<line x1="{LEFT}" y1="{height - BOTTOM}" x2="{W - RIGHT}" y2="{height - BOTTOM}" stroke="#999"/>']
    for k in range(5):
        value = y_max * k / 4
        y = height - BOTTOM - (height - TOP - BOTTOM) * k / 4
        tick = f"{value:,.0f}" if y_max >= 4 else num(value)  # small ranges (rates) keep their decimals
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{tick}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#eee"/>')
    return out


def grouped_bars(
    categories: Sequence[str], series: dict[str, Sequence[float]], label: str, x_title: str, y_title: str
) -> str:
    """Vertical bars: one group per category, one bar per series; axis titles name what and in which unit."""
    y_max = max([v for vals in series.values() for v in vals] or [1]) or 1
    body = _axis(y_max, H)
    plot_w = W - LEFT - RIGHT
    group_w = plot_w / max(1, len(categories))
    bar_w = group_w * 0.8 / max(1, len(series))
    for ci, cat in enumerate(categories):
        x0 = LEFT + ci * group_w + group_w * 0.1
        for si, vals in enumerate(series.values()):
            h = (H - TOP - BOTTOM) * vals[ci] / y_max
            body.append(
                f'<rect class="mark" x="{x0 + si * bar_w:.1f}" y="{H - BOTTOM - h:.1f}" width="{bar_w - 1:.1f}" '
                f'height="{max(h, 0.5):.1f}" fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(cat)}: '
                f"{num(vals[ci])}</title></rect>"
            )
        body.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{H - BOTTOM + 14}" font-size="11" text-anchor="middle">'
            f"{escape(cat)}</text>"
        )
    body += _titles(x_title, y_title, H, LEFT + plot_w / 2)
    legend = _legend(list(series)) if len(series) > 1 else []  # one series: the y title names it
    return _svg(body + legend, label=label)


def hbars(labels: Sequence[str], values: Sequence[float], label: str, x_title: str, unit: str = "") -> str:
    """Horizontal bars, one per label (paths, segments, failure types); ``x_title`` names the bars' measure
    and unit, written under them."""
    height = TOP + 22 * max(1, len(labels)) + 30
    v_max = max(values or [1]) or 1
    left = 190
    body = []
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        y = TOP + 22 * i
        w = (W - left - 80) * value / v_max
        body.append(f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end">{escape(name)[:30]}</text>')
        body.append(
            f'<rect class="mark" x="{left}" y="{y}" width="{max(w, 0.5):.1f}" height="16" fill="{PALETTE[0]}">'
            f"<title>{escape(name)}: {num(value)}{unit}</title></rect>"
        )
        body.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}" font-size="11">{num(value)}{unit}</text>')
    body += _titles(x_title, "", height, left + (W - left - 80) / 2)
    return _svg(body, height, label)


def lines(
    xs: Sequence[str],
    series: dict[str, Sequence[float]],
    label: str,
    x_title: str,
    y_title: str,
    stacked: bool = False,
) -> str:
    """Lines over an ordered x axis; ``stacked`` draws filled areas stacked on each other."""
    n = max(1, len(xs) - 1)
    totals = [sum(vals[i] for vals in series.values()) for i in range(len(xs))] if stacked else []
    y_max = (max(totals or [1]) if stacked else max([v for vals in series.values() for v in vals] or [1])) or 1
    body = _axis(y_max, H)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    base = [0.0] * len(xs)

    def pt(i: int, v: float) -> str:
        return f"{LEFT + plot_w * i / n:.1f},{H - BOTTOM - plot_h * v / y_max:.1f}"

    for si, (name, vals) in enumerate(series.items()):
        colour = PALETTE[si % len(PALETTE)]
        if stacked:
            top = [b + v for b, v in zip(base, vals, strict=True)]
            ring = [pt(i, t) for i, t in enumerate(top)] + [pt(i, base[i]) for i in reversed(range(len(xs)))]
            body.append(
                f'<polygon class="mark" points="{" ".join(ring)}" fill="{colour}" fill-opacity="0.8">'
                f"<title>{escape(name)}</title></polygon>"
            )
            base = top
        else:
            points = " ".join(pt(i, v) for i, v in enumerate(vals))
            body.append(
                f'<polyline class="mark" points="{points}" fill="none" stroke="{colour}" stroke-width="2">'
                f"<title>{escape(name)}</title></polyline>"
            )
    for i in range(0, len(xs), max(1, len(xs) // 8)):
        body.append(f'<text x="{pt(i, 0).split(",")[0]}" y="{H - BOTTOM + 14}" font-size="10">{escape(xs[i])}</text>')
    body += _titles(x_title, y_title, H, LEFT + plot_w / 2)
    return _svg(body + _legend(list(series)), label=label)


def intervals(labels: Sequence[str], mids: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> str:
    """Point estimates with confidence intervals on a symmetric axis around zero (uplift in points)."""
    height = TOP + 26 * max(1, len(labels)) + 46
    span = max([abs(v) for v in (*lows, *highs)] or [1]) or 1
    left, right = 190, W - 40

    def x(v: float) -> float:
        return left + (right - left) * (v + span) / (2 * span)

    body = [f'<line x1="{x(0):.1f}" y1="{TOP - 10}" x2="{x(0):.1f}" y2="{height - 34}" stroke="#999"/>']
    for i, name in enumerate(labels):
        y = TOP + 26 * i + 8
        body.append(f'<text x="{left - 6}" y="{y + 4}" font-size="11" text-anchor="end">{escape(name)[:30]}</text>')
        body.append(
            f'<line class="mark" x1="{x(lows[i]):.1f}" y1="{y}" x2="{x(highs[i]):.1f}" y2="{y}" stroke="{PALETTE[0]}" '
            f'stroke-width="3"><title>{escape(name)}: [{lows[i]:+.1f}, {highs[i]:+.1f}]</title></line>'
        )
        body.append(f'<circle class="mark" cx="{x(mids[i]):.1f}" cy="{y}" r="5" fill="{PALETTE[1]}"/>')
    body.append(f'<text x="{x(0):.1f}" y="{height - 22}" font-size="10" text-anchor="middle">0</text>')
    for edge in (-span, span):
        body.append(f'<text x="{x(edge):.1f}" y="{height - 22}" font-size="10" text-anchor="middle">{edge:+.1f}</text>')
    body += _titles("uplift vs holdout, percentage points (dot: estimate, bar: 95% interval)", "", height, x(0))
    return _svg(body, height, "uplift with confidence intervals")
