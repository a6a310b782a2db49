"""Server-made SVG charts (line, histogram, labelled scatter, bars with intervals), text escaped.

Every chart returns Markup to embed in a page: a titled <svg role="img"> with axes, tick labels
and axis titles, so a reader needs no legend beyond what is drawn.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import ceil, floor, isfinite, log10

from markupsafe import Markup, escape

PALETTE = ["#2457c5", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#5f3dc4", "#e67700"]
MARKED = "#c92a2a"
FONT = 'font-family="system-ui, sans-serif"'
Number = float | int


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[Number, Number]]


@dataclass(frozen=True)
class Point:
    x: Number
    y: Number
    label: str = ""
    marked: bool = False  # drawn in red, e.g. an outlier


@dataclass(frozen=True)
class Bar:
    label: str
    value: Number
    low: Number | None = None
    high: Number | None = None


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if not (isfinite(low) and isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** floor(log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first, last = floor(low / step + 1e-9), ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


class _Frame:
    """Maps data to pixels inside the margins and draws the axes."""

    def __init__(self, width: int, height: int, xs: list[float], ys: list[float], *,
                 left: int = 64, right: int = 20, top: int = 40, bottom: int = 56) -> None:
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, width - right, top, height - bottom
        self.x_ticks, self.y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))

    def x(self, value: float) -> float:
        lo, hi = self.x_ticks[0], self.x_ticks[-1]
        return self.left + (value - lo) / (hi - lo) * (self.right - self.left)

    def y(self, value: float) -> float:
        lo, hi = self.y_ticks[0], self.y_ticks[-1]
        return self.bottom - (value - lo) / (hi - lo) * (self.bottom - self.top)

    def axes(self, x_label: str, y_label: str, x_format: Callable[[float], str] = _fmt,
             x_ticks: bool = True) -> list[str]:
        parts = []
        for tick in self.y_ticks:
            y = self.y(tick)
            parts.append(f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.right}" y2="{y:.1f}" stroke="#e3e7ec"/>')
            parts.append(f'<text x="{self.left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
                         f'fill="#5f6b7a">{escape(_fmt(tick))}</text>')
        if x_ticks:
            for tick in self.x_ticks:
                x = self.x(tick)
                parts.append(f'<line x1="{x:.1f}" y1="{self.bottom}" x2="{x:.1f}" y2="{self.bottom + 5}" stroke="#5f6b7a"/>')
                parts.append(f'<text x="{x:.1f}" y="{self.bottom + 19}" text-anchor="middle" font-size="12" '
                             f'fill="#5f6b7a">{escape(x_format(tick))}</text>')
        parts.append(f'<line x1="{self.left}" y1="{self.bottom}" x2="{self.right}" y2="{self.bottom}" stroke="#5f6b7a"/>')
        parts.append(f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{self.bottom}" stroke="#5f6b7a"/>')
        parts.append(f'<text x="{(self.left + self.right) / 2:.1f}" y="{self.height - 12}" text-anchor="middle" '
                     f'font-size="13" fill="#1f2933">{escape(x_label)}</text>')
        middle = (self.top + self.bottom) / 2
        parts.append(f'<text x="16" y="{middle:.1f}" text-anchor="middle" font-size="13" fill="#1f2933" '
                     f'transform="rotate(-90 16 {middle:.1f})">{escape(y_label)}</text>')
        return parts


def _svg(width: int, height: int, title: str, body: list[str], css_class: str) -> Markup:
    # The title is drawn and also given as <title> so screen readers announce the chart.
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" {FONT}><title>{escape(title)}</title>'
        f'<text x="{width / 2:.1f}" y="22" text-anchor="middle" font-size="15" font-weight="600" '
        f'fill="#1f2933">{escape(title)}</text>{"".join(body)}</svg>')


def _empty(width: int, height: int, title: str, css_class: str, message: str) -> Markup:
    return _svg(width, height, title, [
        f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" font-size="14" '
        f'fill="#5f6b7a">{escape(message)}</text>'], css_class)


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               x_format: Callable[[float], str] = _fmt, y_range: tuple[float, float] | None = None,
               width: int = 640, height: int = 300, empty: str = "No data yet") -> Markup:
    """Lines with round markers, one colour per series, names in a legend above the plot."""
    points = [p for s in series for p in s.points if isfinite(p[0]) and isfinite(p[1])]
    if not points:
        return _empty(width, height, title, "line-chart", empty)
    ys = [p[1] for p in points] + (list(y_range) if y_range else [])
    frame = _Frame(width, height, [p[0] for p in points], ys, top=56 if len(series) > 1 else 40)
    body = frame.axes(x_label, y_label, x_format)
    legend_x = frame.left
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = [(frame.x(x), frame.y(y)) for x, y in s.points if isfinite(x) and isfinite(y)]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            body.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        body.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in pts)
        if len(series) > 1:
            body.append(f'<rect x="{legend_x}" y="32" width="12" height="12" fill="{colour}"/>'
                        f'<text x="{legend_x + 16}" y="42" font-size="12" fill="#1f2933">{escape(s.name)}</text>')
            legend_x += 28 + 7 * len(s.name)
    return _svg(width, height, title, body, "line-chart")


def histogram(values: Sequence[Number], *, title: str, x_label: str, y_label: str = "count",
              bins: int = 10, value_range: tuple[float, float] | None = None,
              width: int = 640, height: int = 300, empty: str = "No data yet") -> Markup:
    """Counts of values in equal-width bins over value_range (or the data's range)."""
    finite = [float(v) for v in values if isfinite(v)]
    if not finite:
        return _empty(width, height, title, "histogram", empty)
    low, high = value_range or (min(finite), max(finite))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    counts = [0] * bins
    for v in finite:
        counts[min(max(int((v - low) / (high - low) * bins), 0), bins - 1)] += 1
    frame = _Frame(width, height, [low, high], [0, max(counts)])
    frame.x_ticks = nice_ticks(low, high) if value_range is None else [low + (high - low) * i / 5 for i in range(6)]
    body = frame.axes(x_label, y_label)
    step = (high - low) / bins
    for i, count in enumerate(counts):
        x0, x1 = frame.x(low + i * step), frame.x(low + (i + 1) * step)
        y = frame.y(count)
        body.append(f'<rect class="bin" x="{x0 + 1:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 2, 1):.1f}" '
                    f'height="{frame.bottom - y:.1f}" fill="{PALETTE[0]}"><title>{escape(_fmt(low + i * step))} to '
                    f'{escape(_fmt(low + (i + 1) * step))}: {count}</title></rect>')
    return _svg(width, height, title, body, "histogram")


def scatter(points: Sequence[Point], *, title: str, x_label: str, y_label: str,
            width: int = 640, height: int = 320, empty: str = "No data yet") -> Markup:
    """Dots with their labels beside them; marked points in red."""
    shown = [p for p in points if isfinite(p.x) and isfinite(p.y)]
    if not shown:
        return _empty(width, height, title, "scatter", empty)
    frame = _Frame(width, height, [p.x for p in shown], [p.y for p in shown], right=90)
    body = frame.axes(x_label, y_label)
    for p in shown:
        x, y = frame.x(p.x), frame.y(p.y)
        colour = MARKED if p.marked else PALETTE[0]
        body.append(f'<circle class="point{" marked" if p.marked else ""}" cx="{x:.1f}" cy="{y:.1f}" r="5" '
                    f'fill="{colour}"><title>{escape(p.label)}: {escape(_fmt(p.x))}, {escape(_fmt(p.y))}</title></circle>')
        if p.label:
            body.append(f'<text x="{x + 8:.1f}" y="{y + 4:.1f}" font-size="12" fill="{colour}">{escape(p.label)}</text>')
    return _svg(width, height, title, body, "scatter")


def interval_bars(bars: Sequence[Bar], *, title: str, x_label: str, baseline: float = 0.0, width: int = 640,
                  row_height: int = 30, empty: str = "No data yet") -> Markup:
    """Horizontal bars from the baseline, one row per label, with a whisker for the interval when given."""
    if not bars:
        return _empty(width, 160, title, "interval-bars", empty)
    height = 40 + 56 + row_height * len(bars)
    label_width = min(max(len(b.label) for b in bars) * 7 + 16, 220)
    ends = [v for b in bars for v in (b.value, b.low, b.high) if v is not None] + [baseline]
    frame = _Frame(width, height, ends, [0, 1], left=label_width)
    body = frame.axes(x_label, "", x_ticks=True)[2 * len(frame.y_ticks):]  # no y grid: rows are the categories
    zero = frame.x(baseline)
    for i, b in enumerate(bars):
        top = frame.top + i * row_height + 6
        x = frame.x(b.value)
        body.append(f'<rect class="bar" x="{min(zero, x):.1f}" y="{top}" width="{abs(x - zero):.1f}" '
                    f'height="{row_height - 12}" fill="{PALETTE[0]}" opacity="0.75"/>')
        body.append(f'<text x="{frame.left - 8}" y="{top + row_height / 2:.1f}" text-anchor="end" font-size="12" '
                    f'fill="#1f2933">{escape(b.label)}</text>')
        if b.low is not None and b.high is not None:
            lo, hi, mid = frame.x(b.low), frame.x(b.high), top + (row_height - 12) / 2
            body.append(f'<path class="interval" d="M{lo:.1f},{mid:.1f}H{hi:.1f}M{lo:.1f},{mid - 6:.1f}V{mid + 6:.1f}'
                        f'M{hi:.1f},{mid - 6:.1f}V{mid + 6:.1f}" stroke="#1f2933" stroke-width="1.5" fill="none">'
                        f'<title>{escape(b.label)}: {escape(_fmt(b.value))} ({escape(_fmt(b.low))} to '
                        f'{escape(_fmt(b.high))})</title></path>')
    return _svg(width, height, title, body, "interval-bars")
