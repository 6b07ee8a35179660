"""The planner's breakdown: the estimate's components as one stacked bar against the
card's free memory (a marker line), with a legend. Hovering a segment shows its formula
and source; the same text is the widget's accessible description."""

from __future__ import annotations

import html

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from cardfit.core.estimate.result import COMPONENT_ORDER, Estimate
from cardfit.core.units import fmt_bytes
from cardfit.gui import theme

BAR_H = 22
PAD = 4


class BreakdownBar(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.estimate: Estimate | None = None
        self.available: int | None = None
        self.card_name = ""
        self._segments: list[tuple[QRectF, object]] = []
        self.setMouseTracking(True)
        self.setMinimumHeight(BAR_H + 60)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setAccessibleName("Memory breakdown")

    def set_estimate(self, e: Estimate | None, available: int | None, card_name: str = "") -> None:
        self.estimate, self.available, self.card_name = e, available, card_name
        self.setAccessibleDescription(self.text())
        self.updateGeometry()
        self.update()

    def components(self):
        if self.estimate is None:
            return []
        order = {k: i for i, k in enumerate(COMPONENT_ORDER)}
        return sorted((c for c in self.estimate.components if c.bytes > 0),
                      key=lambda c: order.get(c.key, 99))

    def text(self) -> str:
        """The breakdown in words (accessibility, tests)."""
        if self.estimate is None:
            return ""
        parts = [f"{c.label} {fmt_bytes(c.bytes)}" for c in self.components()]
        avail = f" of {fmt_bytes(self.available)} free" if self.available is not None else ""
        return f"total {fmt_bytes(self.estimate.total_bytes)}{avail}: " + ", ".join(parts)

    # -- layout --------------------------------------------------------------------------------

    def _legend_items(self) -> list[str]:
        return [f"{c.label} {fmt_bytes(c.bytes)}" for c in self.components()]

    def _legend_rows(self, width: int) -> list[list[tuple[int, str]]]:
        fm = QFontMetrics(self.font())
        rows: list[list[tuple[int, str]]] = [[]]
        x = 0
        for i, t in enumerate(self._legend_items()):
            w = fm.horizontalAdvance(t) + fm.height() + 14
            if rows[-1] and x + w > width:
                rows.append([])
                x = 0
            rows[-1].append((i, t))
            x += w
        return rows

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        fm = QFontMetrics(self.font())
        return BAR_H + fm.height() + 2 * PAD + len(self._legend_rows(width)) * (fm.height() + 4) + PAD

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(420, self.heightForWidth(420))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(200, self.heightForWidth(max(200, self.width())))

    # -- painting ------------------------------------------------------------------------------

    def paintEvent(self, _event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        fm = QFontMetrics(self.font())
        w = self.width() - 2 * PAD
        bar = QRectF(PAD, PAD, w, BAR_H)
        self._segments = []
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(pal.color(QPalette.ColorRole.Base))
        p.drawRect(bar)
        e = self.estimate
        if e is None:
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(bar, Qt.AlignmentFlag.AlignCenter, "select a model")
            p.end()
            return
        total = e.total_bytes
        scale_max = max(total, self.available or 0, 1)
        x = bar.x()
        for c in self.components():
            seg_w = bar.width() * c.bytes / scale_max
            r = QRectF(x, bar.y(), seg_w, bar.height())
            p.setBrush(theme.component_color(c.key))
            p.drawRect(r)
            self._segments.append((r, c))
            x += seg_w
        # Over the card: the part past the free memory is hatched.
        if self.available is not None and total > self.available:
            ax = bar.x() + bar.width() * self.available / scale_max
            p.setPen(Qt.PenStyle.NoPen)
            over = QRectF(ax, bar.y(), x - ax, bar.height())
            p.setBrush(theme.status_strong("no", pal))
            p.setOpacity(0.35)
            p.drawRect(over)
            p.setOpacity(1.0)
        p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(bar)
        # The free-memory marker and the scale line under the bar.
        ty = bar.bottom() + PAD + fm.ascent()
        p.setPen(pal.color(QPalette.ColorRole.WindowText))
        need = f"needs {fmt_bytes(total)}"
        p.drawText(QPointF(bar.x(), ty), need)
        if self.available is not None:
            ax = bar.x() + bar.width() * self.available / scale_max
            status = "no" if total > self.available else (
                "tight" if self.available - total < 0.10 * self.available else "fits")
            p.setPen(QPen(theme.status_strong(status, pal), 2, Qt.PenStyle.SolidLine))
            p.drawLine(QPointF(ax, bar.y() - 2), QPointF(ax, bar.bottom() + 2))
            label = f"{fmt_bytes(self.available)} free on {self.card_name}" if self.card_name else \
                f"{fmt_bytes(self.available)} free"
            lw = fm.horizontalAdvance(label)
            lx = min(max(ax - lw, bar.x() + fm.horizontalAdvance(need) + 12), bar.right() - lw)
            p.drawText(QPointF(lx, ty), label)
        # Legend.
        y = ty + fm.descent() + PAD + 2
        items = self.components()
        for row in self._legend_rows(int(w)):
            lx = bar.x()
            for i, t in row:
                sw = fm.height() - 4
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(theme.component_color(items[i].key))
                p.drawRect(QRectF(lx, y + 2, sw, sw))
                p.setPen(pal.color(QPalette.ColorRole.WindowText))
                p.drawText(QPointF(lx + sw + 4, y + fm.ascent()), t)
                lx += fm.horizontalAdvance(t) + fm.height() + 14
            y += fm.height() + 4
        p.end()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        for r, c in self._segments:
            if r.contains(pos):
                QToolTip.showText(event.globalPosition().toPoint(),
                                  f"<b>{html.escape(c.label)}: {fmt_bytes(c.bytes, 2)}</b><br>"
                                  f"{html.escape(c.formula)}<br><i>{html.escape(c.source)}</i>", self)
                return
        QToolTip.hideText()
