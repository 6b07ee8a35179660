"""The advisor table: every model (catalog and user-added) against the standard workloads
on the chosen card. Each cell shows the predicted peak in GiB, coloured fits / tight
(under 10% headroom) / does not fit, with the breakdown in its tooltip.

``ModelTableModel`` holds rows and the computed cells; ``ModelFilterProxy`` searches and
sorts (on numbers, not on the text shown). The cells are computed off the UI thread by the
window (``compute_cells``) and handed in with ``set_cells``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt

from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.result import Estimate, judge
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.model_spec import ModelSpec
from cardfit.core.units import GiB, fmt_bytes
from cardfit.gui import theme

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
STATUS_ROLE = Qt.ItemDataRole.UserRole + 2
REF_ROLE = Qt.ItemDataRole.UserRole + 3

FIXED_COLUMNS = ("Model", "Params")


@dataclass(frozen=True)
class ModelEntry:
    """A row: the reference that names the model again later (catalog id, path, Hub id),
    its spec, where it came from and its parameter count (computed once, off the UI thread)."""

    ref: str
    spec: ModelSpec
    origin: str  # "catalog" | "added"
    params: int

    @property
    def name(self) -> str:
        return self.spec.name


def make_entry(spec: ModelSpec, ref: str | None = None, origin: str = "catalog") -> ModelEntry:
    return ModelEntry(ref=ref or spec.id, spec=spec, origin=origin, params=spec.param_counts().total)


def compute_cells(entries: list[ModelEntry], workloads: list[tuple[str, Workload]]) -> dict[str, list[Estimate]]:
    """The estimates of every row under every column (worker thread). Judging against a
    card is cheap and done when shown, so a card change needs no new estimates."""
    out: dict[str, list[Estimate]] = {}
    for e in entries:
        row = []
        for _, w in workloads:
            try:
                row.append(estimate(e.spec, w))
            except Exception:  # noqa: BLE001 - an odd spec shows an empty cell, not a crash
                row.append(None)
        out[e.ref] = row
    return out


def fmt_params(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} B"
    return f"{n / 1e6:.0f} M"


def breakdown_html(e: Estimate, available: int | None, card_name: str, title: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c.label)}</td><td align='right'>&nbsp;{fmt_bytes(c.bytes, 2)}</td></tr>"
        for c in e.components if c.bytes)
    head = f"<b>{html.escape(e.model_name)}</b> — {html.escape(title)}<br>{html.escape(e.workload.label())}<br>"
    if available is not None:
        v = judge(e.total_bytes, available, card_name)
        if v.fits:
            verdict = f"fits with {fmt_bytes(v.headroom_bytes)} to spare"
            if v.tight:
                verdict += " (tight: under 10%)"
        else:
            verdict = f"does not fit: {fmt_bytes(-v.headroom_bytes)} short"
        head += (f"needs <b>{fmt_bytes(e.total_bytes)}</b> of {fmt_bytes(available)} on "
                 f"{html.escape(card_name)}: {verdict}<br>")
    head += "".join(f"<b>{html.escape(x[:1].upper() + x[1:])}</b><br>" for x in e.warnings)
    return (f"{head}<table cellspacing='0'>{rows}"
            f"<tr><td><b>Total (peak, {html.escape(e.peak_stage)})</b></td>"
            f"<td align='right'>&nbsp;<b>{fmt_bytes(e.total_bytes, 2)}</b></td></tr></table>")


class ModelTableModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._entries: list[ModelEntry] = []
        self._by_ref: dict[str, int] = {}
        self._workloads: list[tuple[str, Workload]] = []
        self._cells: dict[str, list[Estimate | None]] = {}
        self.available: int | None = None
        self.card_name = "card"

    # -- contents -----------------------------------------------------------------------------

    def set_workloads(self, workloads: list[tuple[str, Workload]]) -> None:
        self.beginResetModel()
        self._workloads = list(workloads)
        self._cells = {}
        self.endResetModel()

    def workloads(self) -> list[tuple[str, Workload]]:
        return list(self._workloads)

    def set_entries(self, entries: list[ModelEntry]) -> None:
        self.beginResetModel()
        self._entries = list(entries)
        self._by_ref = {e.ref: i for i, e in enumerate(self._entries)}
        self.endResetModel()

    def add_entry(self, entry: ModelEntry) -> int:
        """Add (or replace) a row; returns its row number."""
        if entry.ref in self._by_ref:
            row = self._by_ref[entry.ref]
            self._entries[row] = entry
            self.dataChanged.emit(self.index(row, 0), self.index(row, self.columnCount() - 1))
            return row
        row = len(self._entries)
        self.beginInsertRows(QModelIndex(), row, row)
        self._entries.append(entry)
        self._by_ref[entry.ref] = row
        self.endInsertRows()
        return row

    def remove_ref(self, ref: str) -> bool:
        row = self._by_ref.get(ref)
        if row is None:
            return False
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._entries[row]
        self._cells.pop(ref, None)
        self._by_ref = {e.ref: i for i, e in enumerate(self._entries)}
        self.endRemoveRows()
        return True

    def entries(self) -> list[ModelEntry]:
        return list(self._entries)

    def entry(self, row: int) -> ModelEntry:
        return self._entries[row]

    def row_of(self, ref: str) -> int:
        return self._by_ref.get(ref, -1)

    def set_cells(self, cells: dict[str, list[Estimate | None]]) -> None:
        self._cells.update(cells)
        self._changed_cells()

    def set_card(self, available: int | None, card_name: str) -> None:
        self.available, self.card_name = available, card_name
        self._changed_cells()

    def has_cells(self, ref: str | None = None) -> bool:
        if ref is not None:
            return ref in self._cells
        return bool(self._entries) and all(e.ref in self._cells for e in self._entries)

    def refresh_colors(self) -> None:
        self._changed_cells()

    def _changed_cells(self) -> None:
        if self._entries and self._workloads:
            self.dataChanged.emit(self.index(0, len(FIXED_COLUMNS)),
                                  self.index(len(self._entries) - 1, self.columnCount() - 1))

    def cell(self, row: int, col: int) -> Estimate | None:
        k = col - len(FIXED_COLUMNS)
        if k < 0:
            return None
        cells = self._cells.get(self._entries[row].ref)
        return cells[k] if cells and k < len(cells) else None

    def status(self, row: int, col: int) -> str | None:
        e = self.cell(row, col)
        if e is None or self.available is None:
            return None
        return judge(e.total_bytes, self.available, self.card_name).status

    # -- Qt model API -------------------------------------------------------------------------------

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(FIXED_COLUMNS) + len(self._workloads)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation != Qt.Orientation.Horizontal:
            return None
        k = section - len(FIXED_COLUMNS)
        if role == Qt.ItemDataRole.DisplayRole:
            if k < 0:
                return FIXED_COLUMNS[section]
            # Two lines ("Inference\nbf16") keep the columns narrow.
            return self._workloads[k][0].replace(" ", "\n", 1)
        if role == Qt.ItemDataRole.ToolTipRole and k >= 0:
            return f"{self._workloads[k][1].label()}\n(peak memory per GPU; click to sort)"
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        entry = self._entries[row]
        if role == REF_ROLE:
            return entry.ref
        if col == 0:
            if role == Qt.ItemDataRole.DisplayRole:
                return entry.name
            if role == SORT_ROLE:
                return entry.name.lower()
            if role == Qt.ItemDataRole.ToolTipRole:
                where = "added by you" if entry.origin == "added" else "catalog"
                return f"{entry.spec.id}\n{entry.spec.source}\n({where})"
            if role == Qt.ItemDataRole.FontRole and entry.origin == "added":
                from PySide6.QtGui import QFont

                f = QFont()
                f.setItalic(True)
                return f
            return None
        if col == 1:
            if role == Qt.ItemDataRole.DisplayRole:
                return fmt_params(entry.params)
            if role == SORT_ROLE:
                return entry.params
            if role == Qt.ItemDataRole.TextAlignmentRole:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return None
        e = self.cell(row, col)
        if role == Qt.ItemDataRole.DisplayRole:
            if entry.ref not in self._cells:
                return "…"
            return "—" if e is None else f"{e.total_bytes / GiB:.1f} GiB"
        if role == SORT_ROLE:
            return e.total_bytes if e is not None else 1 << 62
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        status = self.status(row, col)
        if role == STATUS_ROLE:
            return status
        if status is None:
            return None
        if role == Qt.ItemDataRole.BackgroundRole:
            return theme.status_fill(status)
        if role == Qt.ItemDataRole.ForegroundRole:
            return theme.status_text(status)
        if role == Qt.ItemDataRole.ToolTipRole:
            title = self._workloads[col - len(FIXED_COLUMNS)][0]
            return breakdown_html(e, self.available, self.card_name, title)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{e.total_bytes / GiB:.1f} GiB, {theme.STATUS_WORDS[status]}"
        return None


class ModelFilterProxy(QSortFilterProxyModel):
    """Search: every word typed must appear in the model's name or id (any case)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._words: list[str] = []
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_search(self, text: str) -> None:
        words = [w for w in text.lower().split() if w]
        if words == self._words:
            return
        if hasattr(self, "beginFilterChange"):  # Qt 6.9+: invalidateFilter is deprecated
            self.beginFilterChange()
            self._words = words
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self._words = words
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent) -> bool:  # noqa: N802
        if not self._words:
            return True
        e = self.sourceModel().entry(row)
        hay = f"{e.spec.name} {e.spec.id} {e.spec.model_type}".lower()
        return all(w in hay for w in self._words)
