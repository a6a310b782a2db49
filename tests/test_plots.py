"""The SVG charts: values land where the axes say, text is escaped, empty data says so."""

import pytest
from bs4 import BeautifulSoup

from app.plots import Bar, Point, Series, histogram, interval_bars, line_chart, nice_ticks, scatter


def parse(markup) -> BeautifulSoup:
    return BeautifulSoup(str(markup), "html.parser")


def texts(svg: BeautifulSoup) -> list[str]:
    return [t.get_text() for t in svg.find_all("text")]


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(3, 97) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(-0.37, 0.81) == [-0.5, 0, 0.5, 1.0]
    assert nice_ticks(5, 5) == [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]  # one value: a unit around it


def test_line_chart_places_points_on_the_axes_and_names_series():
    svg = parse(line_chart([Series("ranks", [(0, 0.0), (1, 0.5), (2, 1.0)]), Series("likert", [(0, 1.0), (2, 0.25)])],
                           title="Alpha by week", x_label="week", y_label="alpha"))
    root = svg.find("svg")
    assert root["role"] == "img" and svg.find("title").get_text() == "Alpha by week"
    assert {"Alpha by week", "week", "alpha", "ranks", "likert", "0", "0.5", "1"} <= set(texts(svg))
    lines = svg.find_all("polyline")
    assert len(lines) == 2
    first = [tuple(map(float, p.split(","))) for p in lines[0]["points"].split()]
    # x 0..2 spans the plot width, y 0..1 its height: the middle point is in the middle.
    (x0, y0), (x1, y1), (x2, y2) = first
    assert x1 == pytest.approx((x0 + x2) / 2) and y1 == pytest.approx((y0 + y2) / 2) and y2 < y0


def test_text_is_escaped():
    svg = str(scatter([Point(0.5, 3, "<script>alert(1)</script>")], title="a & b", x_label="x", y_label="y"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a &amp; b" in svg


def test_histogram_counts_per_bin():
    svg = parse(histogram([0.05, 0.1, 0.15, 0.55, 0.95, 1.0], title="Tasks", x_label="tau-b", bins=4,
                          value_range=(0.0, 1.0)))
    counts = [int(r.find("title").get_text().rsplit(": ", 1)[1]) for r in svg.find_all("rect", class_="bin")]
    assert counts == [3, 0, 1, 2]  # 1.0 falls in the last bin
    heights = [float(r["height"]) for r in svg.find_all("rect", class_="bin")]
    assert heights[0] == pytest.approx(1.5 * heights[3]) and heights[1] == 0


def test_scatter_marks_points():
    svg = parse(scatter([Point(1, 0.8, "ann"), Point(2, -0.1, "bob", marked=True)], title="t", x_label="s",
                        y_label="a"))
    marked = svg.find_all("circle", class_="marked")
    assert [c.find("title").get_text() for c in marked] == ["bob: 2, -0.1"]
    assert "ann" in texts(svg) and "bob" in texts(svg)


def test_interval_bars_draw_whiskers_around_values():
    svg = parse(interval_bars([Bar("v2", 1100, 1050, 1150), Bar("v1", 900, 850, 950)], title="Leaderboard",
                              x_label="rating", baseline=1000))
    bars = svg.find_all("rect", class_="bar")
    whiskers = svg.find_all("path", class_="interval")
    assert len(bars) == 2 and len(whiskers) == 2
    # Bars grow from the baseline: v2 to the right of it, v1 to the left, same length.
    assert float(bars[0]["x"]) == pytest.approx(float(bars[1]["x"]) + float(bars[1]["width"]))
    assert float(bars[0]["width"]) == pytest.approx(float(bars[1]["width"]))
    assert whiskers[0].find("title").get_text() == "v2: 1100 (1050 to 1150)"


@pytest.mark.parametrize("chart", [
    lambda: line_chart([], title="T", x_label="x", y_label="y"),
    lambda: histogram([], title="T", x_label="x"),
    lambda: scatter([], title="T", x_label="x", y_label="y"),
    lambda: interval_bars([], title="T", x_label="x"),
])
def test_empty_data_says_so(chart):
    assert "No data yet" in texts(parse(chart()))
