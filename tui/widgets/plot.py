"""A line plot of named series: ``append`` points, then ``replot`` when you like.

Wraps ``textual_plotext.PlotextPlot``. The legend is a line of text under the
plot, each name in its series' colour: plotext draws its legend inside the
plot's top-left corner, where a falling perplexity curve (or a Zipf curve)
starts, and on a small terminal it covered them. Each series keeps a downsampled history
(``History``): once it holds ``2 * max_points`` points every other one is
dropped and later points are kept at the coarser stride, so a long training
run costs the same to draw as a short one (plotext's build time grows
linearly with the number of points). Non-finite values (a diverged loss) are
never drawn. Log axes are drawn by plotting log10 values, never with plotext's
``yscale("log")``, which breaks on rebuild: with ``log_y`` the series keep their values and the
plot draws their log10, labelled with readable ticks (5, 10, 20, 50; ``tui.widgets.axes``).
``integer_x`` puts ticks on whole numbers only (epochs). ``smoothing`` (β, 0 = off) draws each
series as its bias-corrected EMA, in log space on a log axis, over the raw curve in a faint copy
of its colour (dotted without colour); ``x_from`` crops the drawing to x ≥ that value (a zoom; the EMA still runs
from the first point). ``export_svg`` writes the plot and its legend as an SVG.

Without colour (``NO_COLOR`` set, so ``App.no_color``) no two series share a
marker: overlaid runs and the Zipf curves are told apart by ``•``, ``+``,
``x``... and the legend shows each series' marker.

Left out: throttling — the caller decides when to ``replot``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rich.color import Color as RichColor
from rich.console import Console
from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size
from textual.widget import Widget
from textual_plotext import PlotextPlot

from tui.widgets.axes import ema, int_ticks, log_ticks, tick_label


class CachedPlot(PlotextPlot):
    """A PlotextPlot that rebuilds its figure only after ``invalidate()`` or a resize.

    Textual re-renders widgets for many reasons (layout, focus, a neighbour's
    update); plotext's ``build()`` costs tens of milliseconds, which a training
    thread would feel. Caching the built text keeps those renders free. The
    cache is dropped on every resize (e.g. the ``?`` keys panel narrowing the
    screen) and is also keyed on the size it was built for, so a figure built
    for one width is never drawn at another.
    """

    _cache: tuple[object, Text] | None = None

    def invalidate(self) -> None:
        self._cache = None
        self.refresh()

    def on_resize(self) -> None:
        self.invalidate()

    def render(self) -> Text:
        key = (self.size, self.app.theme, self.theme)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, super().render())  # type: ignore[arg-type]
        return self._cache[1]


COLORS = ("cyan", "orange", "green", "magenta", "yellow", "blue", "red", "white")
RICH_COLORS = {"orange": "dark_orange"}  # plotext colour names Rich spells differently
# Markers handed out under NO_COLOR, in order (a line first); plotext draws a one-character marker as is.
NO_COLOR_MARKERS = ("braille", "•", "+", "x", "o", "*", "#", "@", "%", "&")
GLYPHS = {"braille": "━", "hd": "━", "fhd": "━", "dot": "·", "sd": "█"}  # legend glyph of plotext's named markers
FAINT = 0.4  # a raw curve behind its smoothed one: this share of its colour, the rest the background's


def faint(color: str, background: tuple[int, int, int]) -> tuple[int, int, int]:
    """A plotext colour name blended toward the background, as an RGB triple plotext draws."""
    rgb = RichColor.parse(RICH_COLORS.get(color, color)).get_truecolor()
    return tuple(round(FAINT * c + (1 - FAINT) * b) for c, b in zip(rgb, background))  # type: ignore[return-value]


def crop(xs: Sequence[float], ys: Sequence[float], x_from: float | None) -> tuple[list[float], list[float]]:
    """The points with x ≥ ``x_from`` (all of them when it is None)."""
    keep = [i for i, x in enumerate(xs) if x_from is None or x >= x_from]
    return [xs[i] for i in keep], [ys[i] for i in keep]


def distinct_markers(wanted: dict[str, str]) -> dict[str, str]:
    """Each series' marker, changed where an earlier series already has it (wanted: name -> marker).

    {"train": "braille", "validation": "•", "test": "braille"} -> the third gets "+".
    """
    out: dict[str, str] = {}
    for name, marker in wanted.items():
        if marker in out.values():
            free = [m for m in NO_COLOR_MARKERS if m not in out.values()]
            marker = free[0] if free else marker  # more series than markers: share the last ones
        out[name] = marker
    return out


class Legend(Widget):
    """``━ name`` per series (``• name`` etc. for a series drawn with a marker), in its colour,
    packed into as few lines as the width allows.

    Entries never break inside (a Static would wrap "━ 1-gram a=4.07" between
    the bar and the name).
    """

    DEFAULT_CSS = "Legend { height: auto; padding: 0 1; color: $text-muted; }"

    def __init__(self, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self.entries: list[tuple[str, ...]] = []  # (name, plotext colour[, glyph; default ━])
        self.display = False  # until there is a series to name

    def set_entries(self, entries: list[tuple[str, str]]) -> None:
        self.entries = entries
        self.display = bool(entries)
        self.refresh(layout=True)

    def lines(self, width: int) -> list[Text]:
        out: list[Text] = []
        for name, color, *glyph in self.entries:
            entry = f"{glyph[0] if glyph else '━'} {name}"
            if out and out[-1].cell_len + 2 + len(entry) <= width:
                out[-1].append("  ")
            else:
                out.append(Text())
            out[-1].append(entry, style=RICH_COLORS.get(color, color))
        return out

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # A lone entry wider than the plot wraps: count its rows too.
        return max(1, sum(-(-line.cell_len // max(1, width)) for line in self.lines(width)))

    def render(self) -> Text:
        return Text("\n").join(self.lines(self.content_size.width))


@dataclass
class History:
    """Points of one series, thinned to between ``max_points`` and twice that."""

    max_points: int = 1500
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    stride: int = 1  # keep one point in `stride` of those appended
    _seen: int = 0
    last: tuple[float, float] | None = None  # always drawn, even between strides

    def append(self, x: float, y: float) -> None:
        self.last = (x, y)
        self._seen += 1
        if (self._seen - 1) % self.stride:
            return
        self.xs.append(x)
        self.ys.append(y)
        if len(self.xs) >= 2 * self.max_points:
            # Halve the resolution of the whole history; keep the first point.
            self.xs, self.ys = self.xs[::2], self.ys[::2]
            self.stride *= 2

    def points(self) -> tuple[list[float], list[float]]:
        """Finite points to draw, ending with the latest one appended."""
        xs, ys = list(self.xs), list(self.ys)
        if self.last is not None and (not xs or xs[-1] != self.last[0]):
            xs.append(self.last[0])
            ys.append(self.last[1])
        keep = [i for i, y in enumerate(ys) if math.isfinite(y)]
        return [xs[i] for i in keep], [ys[i] for i in keep]

    def __len__(self) -> int:
        return len(self.points()[0])


class SeriesPlot(Widget):
    """Named line series over a shared x axis, drawn with plotext."""

    DEFAULT_CSS = """
    SeriesPlot { height: 1fr; min-height: 6; }
    SeriesPlot > CachedPlot { height: 1fr; }
    """

    def __init__(
        self,
        title: str = "",
        *,
        xlabel: str = "",
        ylabel: str = "",
        max_points: int = 1500,
        marker: str = "braille",
        log_y: bool = False,
        integer_x: bool = False,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.plot_title = title
        self.log_y = log_y  # draw log10 of the values (positive ones only), with readable ticks
        self.integer_x = integer_x  # x ticks on whole numbers only
        self.smoothing = 0.0  # EMA β; 0 draws the values as they are
        self.x_from: float | None = None  # draw only x ≥ this (a zoom)
        self.xlabel = xlabel
        self.ylabel = ylabel
        self.max_points = max_points
        self.marker = marker
        self.series: dict[str, History] = {}
        self.series_colors: dict[str, str] = {}
        self.series_markers: dict[str, str] = {}  # e.g. "•" for per-epoch points over a braille line
        self.empty_message = ""  # drawn as the title when there is nothing to plot

    def compose(self) -> ComposeResult:
        yield CachedPlot()
        yield Legend()

    def on_mount(self) -> None:
        self.replot()

    def append(self, name: str, x: float, y: float, *, color: str | None = None,
               marker: str | None = None) -> None:
        """Add one point to series ``name`` (created on first use; ``marker`` overrides the plot's)."""
        if marker is not None:
            self.series_markers[name] = marker
        if name not in self.series:
            self.series[name] = History(self.max_points)
            self.series_colors[name] = color or COLORS[(len(self.series) - 1) % len(COLORS)]
        self.series[name].append(float(x), float(y))

    def set_series(
        self, name: str, xs: Iterable[float], ys: Iterable[float], *, color: str | None = None,
        marker: str | None = None,
    ) -> None:
        """Replace series ``name`` with the given points (downsampled as needed)."""
        self.series.pop(name, None)
        if marker is not None:
            self.series_markers[name] = marker
        for x, y in zip(xs, ys):
            self.append(name, x, y, color=color)
        if name not in self.series:  # no points: keep an empty entry for the legend order
            self.series[name] = History(self.max_points)
            self.series_colors[name] = color or COLORS[(len(self.series) - 1) % len(COLORS)]

    def clear(self) -> None:
        self.series.clear()
        self.series_colors.clear()
        self.series_markers.clear()

    def point_count(self, name: str | None = None) -> int:
        """Points drawn for one series, or for all of them."""
        names: Sequence[str] = [name] if name else list(self.series)
        return sum(len(self.series[n]) for n in names if n in self.series)

    def drawn_points(self, name: str) -> tuple[list[float], list[float]]:
        """Series ``name`` as drawn: log10 of its positive values on a log axis, smoothed, cropped."""
        xs, ys = self.series[name].points()
        if self.log_y:
            keep = [i for i, y in enumerate(ys) if y > 0]
            xs, ys = [xs[i] for i in keep], [math.log10(ys[i]) for i in keep]
        if self.smoothing:
            ys = ema(ys, self.smoothing)
        return crop(xs, ys, self.x_from)

    def _raw_points(self, name: str) -> tuple[list[float], list[float]]:
        smoothing, self.smoothing = self.smoothing, 0.0
        try:
            return self.drawn_points(name)
        finally:
            self.smoothing = smoothing

    def replot(self) -> None:
        """Rebuild the plotext figure from the histories and redraw."""
        try:
            plot = self.query_one(CachedPlot)
        except Exception:  # not composed yet
            return
        plt = plot.plt
        plt.clear_data()
        drawn = []
        markers = {name: self.series_markers.get(name, self.marker) for name in self.series}
        if self.app.no_color:  # colour cannot tell the series apart: their markers must
            markers = distinct_markers(markers)
        all_x: list[float] = []
        all_y: list[float] = []
        if self.smoothing:  # the raw curves first, faint, so that every smoothed one is drawn over them
            background = self._background()
            for name in self.series:
                xs, ys = self._raw_points(name)
                if xs:
                    marker = "dot" if self.app.no_color else self.series_markers.get(name, self.marker)
                    plt.plot(xs, ys, color=faint(self.series_colors[name], background), marker=marker)
                    all_x += xs
                    all_y += ys
        for name in self.series:
            xs, ys = self.drawn_points(name)
            if not xs:
                continue
            plt.plot(xs, ys, color=self.series_colors[name], marker=markers[name])
            drawn.append(name)
            all_x += xs
            all_y += ys
        self._ticks(plt, all_x, all_y, plot.size.width, plot.size.height)
        legend = self.query_one(Legend)
        entries = [(name, self.series_colors[name], GLYPHS.get(markers[name], markers[name])) for name in drawn]
        if entries != legend.entries:  # unchanged during training: no re-layout per replot
            legend.set_entries(entries)
        title = self.plot_title if drawn or not self.empty_message else self.empty_message
        width = plot.size.width - 4  # plotext drops a title wider than its frame: cut it instead
        plt.title(title if len(title) <= width or width < 8 else title[: width - 1] + "…")
        plt.xlabel(self.xlabel)
        plt.ylabel(self.ylabel)
        plot.invalidate()

    def _background(self) -> tuple[int, int, int]:
        from textual.color import Color

        surface = self.app.theme_variables.get("surface", "#1e1e1e")
        return Color.parse(surface).rgb

    def _ticks(self, plt: object, xs: list[float], ys: list[float], width: int, height: int) -> None:
        """Readable log ticks and whole-number x ticks where asked for (plotext's own elsewhere: its
        ticks cannot be reset to automatic, so a plot sets them only when it is made with
        ``log_y`` / ``integer_x``, and on every replot with points)."""
        if self.log_y and ys:
            values = log_ticks(10 ** min(ys), 10 ** max(ys), max_ticks=max(2, height // 3))
            plt.yticks([math.log10(v) for v in values], [tick_label(v) for v in values])  # type: ignore[attr-defined]
        if self.integer_x and xs:
            whole = int_ticks(min(xs), max(xs), max_ticks=max(2, width // 8))
            plt.xticks([float(v) for v in whole], [str(v) for v in whole])  # type: ignore[attr-defined]

    def export_svg(self, title: str) -> str:
        """The plot as drawn now, with its legend under it, as an SVG document."""
        plot, legend = self.query_one(CachedPlot), self.query_one(Legend)
        width = max(20, plot.size.width)
        console = Console(record=True, width=width, file=io.StringIO(), color_system="truecolor",
                          force_terminal=True)
        console.print(plot.render(), soft_wrap=True)
        for line in legend.lines(width - 2):
            console.print(Text(" ") + line)
        return console.export_svg(title=title)
