"""Server-rendered SVG charts for the dashboards: a time series, stacked success bars, a histogram.

Pure functions: data in, escaped SVG markup out (no JavaScript, nothing fetched). Geometry is
computed in Decimal like the money it draws; times are labelled in the active time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from pms.money import rupees

ZERO = Decimal(0)
ONE_US = timedelta(microseconds=1)
LATENCY_BUCKETS_MS = (50, 100, 200, 500, 1000, 2000, 5000)

ACCENT = "#2563eb"
ACCENT_FILL = "#2563eb22"
OK = "#16a34a"
BAD = "#dc2626"
GRID = "#e5e7eb"
MUTED = "#6b7280"
# Width of one character of 12 px label text, generous (digits and capitals of a sans-serif font).
CHAR_W = Decimal("7.2")


def text_width(chars: int) -> int:
    """Pixels that `chars` characters of 12 px label text take, at most."""
    return int(CHAR_W * chars) + 1


def _n(value: Decimal) -> str:
    """An SVG coordinate: one decimal place."""
    return str(value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def inr(amount: Decimal, *, places: int = 0) -> str:
    """₹ with Indian digit grouping: 12,34,567 (pms.money.rupees, whole rupees by default)."""
    return rupees(amount, places=places)


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above `value` (a round top for an axis)."""
    if value <= 0:
        return Decimal(1)
    scale = Decimal(1).scaleb(value.adjusted())
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        if value <= step * scale:
            return step * scale
    return Decimal(10) * scale  # unreachable: value < 10 × scale by definition of adjusted()


def _svg(width: int, height: int, label: str, body: str) -> SafeString:
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        width,
        height,
        label,
        label,
        mark_safe(body),  # noqa: S308  (built below from escaped parts only)
    )


def _empty(width: int, height: int, label: str, message: str) -> SafeString:
    body = format_html(
        '<text x="{}" y="{}" text-anchor="middle" fill="{}" font-size="13">{}</text>',
        width // 2,
        height // 2,
        MUTED,
        message,
    )
    return _svg(width, height, label, body)


def time_series(
    points: Sequence[tuple[datetime, Decimal]],
    *,
    label: str,
    width: int = 640,
    height: int = 200,
    empty: str = "no data yet",
    floor: Decimal = Decimal(1000),
) -> SafeString:
    """A money line over time (area under it shaded), y from zero to a round top (at least
    `floor`), first and last times on the x axis."""
    if not points:
        return _empty(width, height, label, empty)
    left, right, top, bottom = Decimal(78), Decimal(16), Decimal(14), Decimal(26)
    plot_w = Decimal(width) - left - right
    plot_h = Decimal(height) - top - bottom
    t0, t1 = points[0][0], points[-1][0]
    span = Decimal((t1 - t0) // ONE_US)
    low = min(ZERO, *(v for _, v in points))
    high = nice_ceiling(max(floor, *(v - low for _, v in points))) + low

    def x(t: datetime) -> Decimal:
        if span == 0:
            return left + plot_w / 2
        return left + plot_w * Decimal((t - t0) // ONE_US) / span

    def y(v: Decimal) -> Decimal:
        return top + plot_h - plot_h * (v - low) / (high - low)

    parts: list[str] = []
    for fraction in (Decimal(0), Decimal("0.5"), Decimal(1)):
        value = low + (high - low) * fraction
        yy = y(value)
        parts.append(
            format_html(
                '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}"/>'
                '<text x="{}" y="{}" text-anchor="end" fill="{}" font-size="11">{}</text>',
                _n(left),
                _n(yy),
                _n(left + plot_w),
                _n(yy),
                GRID,
                _n(left - 6),
                _n(yy + 4),
                MUTED,
                inr(value),
            )
        )
    coords = [(x(t), y(v)) for t, v in points]
    line = " ".join(f"{_n(cx)},{_n(cy)}" for cx, cy in coords)
    base = _n(y(max(low, ZERO)))
    area = f"M{_n(coords[0][0])},{base} L" + " L".join(f"{_n(cx)},{_n(cy)}" for cx, cy in coords)
    area += f" L{_n(coords[-1][0])},{base} Z"
    parts.append(format_html('<path d="{}" fill="{}" stroke="none"/>', area, ACCENT_FILL))
    parts.append(
        format_html(
            '<polyline points="{}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round"/>',
            line,
            ACCENT,
        )
    )
    last_x, last_y = coords[-1]
    parts.append(format_html('<circle cx="{}" cy="{}" r="3.5" fill="{}"/>', _n(last_x), _n(last_y), ACCENT))
    first_label = timezone.localtime(t0).strftime("%d %b %H:%M" if span > 86400 * 10**6 else "%H:%M")
    last_label = timezone.localtime(t1).strftime("%d %b %H:%M" if span > 86400 * 10**6 else "%H:%M")
    axis_y = _n(Decimal(height) - 8)
    parts.append(
        format_html(
            '<text x="{}" y="{}" fill="{}" font-size="11">{}</text>'
            '<text x="{}" y="{}" text-anchor="end" fill="{}" font-size="11">{}</text>',
            _n(left),
            axis_y,
            MUTED,
            first_label,
            _n(left + plot_w),
            axis_y,
            MUTED,
            last_label,
        )
    )
    return _svg(width, height, label, "".join(parts))


def success_bars(
    rows: Sequence[tuple[str, int, int]],
    *,
    label: str = "Child order success rate",
    width: int = 640,
    empty: str = "no finished child orders in this period",
) -> SafeString:
    """One stacked bar per child: accepted or filled (green) vs rejected or failed (red), with the rate."""
    row_h, gap, top = 22, 8, 6
    if not rows:
        return _empty(width, 80, label, empty)
    height = top * 2 + len(rows) * (row_h + gap)
    # The name column fits the longest name (up to 40% of the width; longer names are cut with an
    # ellipsis, the full name in the bar's tooltip), the rate column its longest label.
    longest_name = max(len(name) for name, _, _ in rows)
    left = min(Decimal(max(60, text_width(longest_name) + 16)), Decimal(width) * Decimal("0.4"))
    name_chars = int((left - 16) / CHAR_W)
    longest_rate = max(len(f"100% ({good}/{good + bad})") for _, good, bad in rows)
    right = Decimal(text_width(longest_rate) + 12)
    plot_w = Decimal(width) - left - right
    parts: list[str] = []
    for i, (name, good, bad) in enumerate(rows):
        total = good + bad
        y0 = Decimal(top + i * (row_h + gap))
        good_w = plot_w * good / total if total else ZERO
        rate = f"{Decimal(good) * 100 / total:.0f}%" if total else "–"
        shown = name if len(name) <= name_chars else name[: max(1, name_chars - 1)] + "…"
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="end" font-size="12" fill="#111827">'
                "<title>{}</title>{}</text>"
                '<rect x="{}" y="{}" width="{}" height="{}" rx="3" fill="{}">'
                "<title>{}: {} rejected or failed</title></rect>"
                '<rect x="{}" y="{}" width="{}" height="{}" rx="3" fill="{}">'
                "<title>{}: {} filled or accepted</title></rect>"
                '<text x="{}" y="{}" font-size="12" fill="#111827">{} '
                '<tspan fill="{}">({}/{})</tspan></text>',
                _n(left - 8),
                _n(y0 + 15),
                name,
                shown,
                _n(left),
                _n(y0),
                _n(plot_w),
                row_h,
                BAD if bad else GRID,
                name,
                bad,
                _n(left),
                _n(y0),
                _n(good_w),
                row_h,
                OK,
                name,
                good,
                _n(left + plot_w + 8),
                _n(y0 + 15),
                rate,
                MUTED,
                good,
                total,
            )
        )
    return _svg(width, height, label, "".join(parts))


def latency_buckets(values: Sequence[int]) -> list[tuple[str, int]]:
    """(label, count) per latency bucket in ms: <50, 50–100, … , ≥5000."""
    edges = LATENCY_BUCKETS_MS
    counts = [0] * (len(edges) + 1)
    for v in values:
        index = next((i for i, edge in enumerate(edges) if v < edge), len(edges))
        counts[index] += 1
    labels = [f"<{edges[0]}"]
    labels += [f"{lo}–{hi}" for lo, hi in pairwise(edges)]
    labels.append(f"≥{edges[-1]}")
    return list(zip(labels, counts, strict=True))


def percentile(values: Sequence[int], pct: int) -> int | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))
    return ordered[rank - 1]


def latency_histogram(
    values: Sequence[int],
    *,
    label: str = "Latency: master order seen → child acknowledged (ms)",
    width: int = 640,
    height: int = 230,
    empty: str = "no acknowledged child orders in this period",
) -> SafeString:
    """Bars per latency bucket with counts, and n / p50 / p95 in a caption."""
    if not values:
        return _empty(width, height, label, empty)
    buckets = latency_buckets(values)
    left, right, top, bottom = Decimal(40), Decimal(12), Decimal(44), Decimal(30)
    plot_w = Decimal(width) - left - right
    plot_h = Decimal(height) - top - bottom
    peak = max(c for _, c in buckets) or 1
    slot = plot_w / len(buckets)
    parts = [
        format_html(
            '<text x="{}" y="16" font-size="12" fill="{}">n = {} · p50 {} ms · p95 {} ms · max {} ms</text>',
            _n(left),
            MUTED,
            len(values),
            percentile(values, 50),
            percentile(values, 95),
            max(values),
        ),
        format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}"/>',
            _n(left),
            _n(top + plot_h),
            _n(left + plot_w),
            _n(top + plot_h),
            GRID,
        ),
    ]
    for i, (name, count) in enumerate(buckets):
        bar_h = plot_h * count / peak
        x0 = left + slot * i + slot * Decimal("0.15")
        bar_w = slot * Decimal("0.7")
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}"><title>{} ms: {}</title></rect>'
                '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="#111827">{}</text>'
                '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="{}">{}</text>',
                _n(x0),
                _n(top + plot_h - bar_h),
                _n(bar_w),
                _n(bar_h),
                ACCENT,
                name,
                count,
                _n(x0 + bar_w / 2),
                _n(top + plot_h - bar_h - 4),
                count or "",
                _n(x0 + bar_w / 2),
                _n(top + plot_h + 16),
                MUTED,
                name,
            )
        )
    return _svg(width, height, label, "".join(parts))


__all__ = [
    "inr",
    "latency_buckets",
    "latency_histogram",
    "nice_ceiling",
    "percentile",
    "success_bars",
    "time_series",
]
