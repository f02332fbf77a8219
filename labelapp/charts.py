"""Small inline SVG charts rendered on the server (no CDN, no JavaScript)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2563eb", "#15803d", "#b45309", "#b91c1c", "#7c3aed")


def _svg(width: int, height: int, body: list[str], title: str) -> SafeString:
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


#: Rough width of one character of the 10px labels (SVG cannot measure text on the server).
CHAR_W = 6.2


def bar_chart(
    values: Sequence[float],
    labels: Sequence[str],
    *,
    title: str,
    width: int = 520,
    height: int = 180,
    log: bool = False,
) -> SafeString:
    """Vertical bars, every label under its bar and the value on hover.

    Labels that do not fit side by side are turned 45 degrees; the chart grows downwards and
    leftwards to hold them, so none is clipped or left out.
    """
    import math

    n = max(len(values), 1)
    top_label = f"{max(values, default=0):,.0f}"
    longest = max((len(str(label)) for label in labels), default=0) * CHAR_W
    pad_t = 8
    pad_l = max(40, int(len(top_label) * CHAR_W) + 8)
    bar_w = (width - pad_l - 4) / n
    turned = longest > bar_w - 2
    if turned:
        # A label turned -45 degrees and ending under its bar's centre reaches left and down
        # by longest / sqrt(2).
        reach = longest / math.sqrt(2)
        pad_l = max(pad_l, int(reach - bar_w / 2) + 6)
        bar_w = (width - pad_l - 4) / n
        pad_b = int(reach) + 18
    else:
        pad_b = 22
    plot_h = height - 22 - pad_t  # the bars keep their height; the labels add to it
    height = pad_t + plot_h + pad_b
    scaled = [math.log10(1 + v) if log else float(v) for v in values]
    top = max(scaled, default=0) or 1.0
    axis_y = pad_t + plot_h
    body = [
        f'<line x1="{pad_l}" y1="{axis_y}" x2="{width}" y2="{axis_y}" stroke="#9ca3af"/>',
        f'<text x="{pad_l - 4}" y="{pad_t + 8}" text-anchor="end" font-size="10">'
        f"{top_label}</text>",
    ]
    for i, (v, s, label) in enumerate(zip(values, scaled, labels, strict=True)):
        h = plot_h * s / top
        x = pad_l + i * bar_w
        body.append(
            f'<rect x="{x + 1:.1f}" y="{axis_y - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}">'
            f"<title>{escape(str(label))}: {v:,}</title></rect>"
        )
    for i, label in enumerate(labels):
        x = pad_l + (i + 0.5) * bar_w
        if turned:
            y = axis_y + 10
            body.append(
                f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="end" font-size="10" '
                f'transform="rotate(-45 {x:.1f} {y:.1f})" class="tick">{escape(str(label))}</text>'
            )
        else:
            body.append(
                f'<text x="{x:.1f}" y="{axis_y + 16:.1f}" text-anchor="middle" font-size="10" '
                f'class="tick">{escape(str(label))}</text>'
            )
    if log:
        body.append(
            f'<text x="{width - 4}" y="{pad_t + 8}" text-anchor="end" font-size="10" '
            'fill="#6b7280">log scale</text>'
        )
    return _svg(width, height, body, title)


def line_chart(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 520,
    height: int = 220,
    x_format: str = "{x:,.0f} labels",
    y_max: float | None = None,
) -> SafeString:
    """Lines with point markers; ``series`` is ``[(name, xs, ys), ...]``.

    Each marker carries ``data-series`` (the series' position) and ``data-x``; its hover text
    reads ``name: x, y`` with ``x`` written by ``x_format``. The y axis runs from 0 to
    ``y_max`` (default: the highest value).
    """
    pad_l, pad_b, pad_t, pad_r = 46, 34, 10, 10
    xs_all = [x for _, xs, _ in series for x in xs] or [0, 1]
    ys_all = [y for _, _, ys in series for y in ys] or [0, 1]
    x0, x1 = min(xs_all + [0]), max(xs_all) or 1
    y0, y1 = 0, y_max or max(ys_all) or 1
    x1 = x1 if x1 > x0 else x0 + 1

    def px(x: float) -> float:
        return pad_l + (width - pad_l - pad_r) * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return height - pad_b - (height - pad_b - pad_t) * (y - y0) / (y1 - y0)

    body = [
        f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" y2="{height - pad_b}" '
        'stroke="#9ca3af"/>',
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#9ca3af"/>',
        f'<text x="{pad_l - 4}" y="{pad_t + 8}" text-anchor="end" font-size="10">{y1:,.0f}</text>',
        f'<text x="{pad_l - 4}" y="{height - pad_b}" text-anchor="end" font-size="10">0</text>',
        f'<text x="{width - pad_r}" y="{height - pad_b + 12}" text-anchor="end" font-size="10">'
        f"{x1:,.0f}</text>",
        f'<text x="{(width + pad_l) / 2}" y="{height - 4}" text-anchor="middle" font-size="11">'
        f"{escape(x_label)}</text>",
        f'<text x="12" y="{(height - pad_b) / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(height - pad_b) / 2})">{escape(y_label)}</text>',
    ]
    for k, (name, xs, ys) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        body.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in zip(xs, ys, strict=True):
            body.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}" '
                f'data-series="{k}" data-x="{x:g}">'
                f"<title>{escape(name)}: {escape(x_format.format(x=x))}, {y:,.0f}</title></circle>"
            )
        body.append(
            f'<text x="{pad_l + 8}" y="{pad_t + 12 + 13 * k}" font-size="11" fill="{color}">'
            f"{escape(name)}</text>"
        )
    return _svg(width, height, body, title)
