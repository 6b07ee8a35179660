"""The card a plan is for: a GPU of this machine (judged on its free memory, after other
processes), a what-if card from the catalog, or a custom size; and how many of them.

Cards are named by a key that survives restarts: "gpu:0", "catalog:rtx-4090",
"custom:24" (GiB)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from cardfit.core.hardware.cards import Card, card_from_gpu, card_from_vram, load_catalog
from cardfit.core.units import GiB, MiB, fmt_bytes

DEFAULT_CATALOG = "rtx-4090"
# A detected card's free memory moves by a few MiB all the time; the fit matrix is only
# recomputed when it moves by more than this.
SIGNIFICANT_CHANGE = 64 * MiB


def card_key(card: Card) -> str:
    if card.kind == "detected":
        return f"gpu:{card.gpu_index}"
    if card.kind == "catalog":
        return f"catalog:{card.id}"
    return f"custom:{card.total_bytes / GiB:g}"


class CardPicker(QWidget):
    card_changed = Signal(object)  # Card
    gpus_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._catalog = load_catalog()
        self._detected: list[Card] = []
        self._detected_errors: list[str] = []
        self._card: Card | None = None
        self._wanted: str | None = None  # a saved key waiting for the first probe
        self._have_machine = False
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("&Card:")
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.setMaxVisibleItems(24)
        self.combo.setAccessibleName("Card")
        self.label.setBuddy(self.combo)
        self.custom = QDoubleSpinBox()
        self.custom.setRange(0.5, 4096)
        self.custom.setDecimals(1)
        self.custom.setSuffix(" GiB")
        self.custom.setValue(24)
        self.custom.setAccessibleName("Custom card size")
        self.custom.setKeyboardTracking(False)
        self.custom.hide()
        self.times = QLabel("&×")
        self.count = QSpinBox()
        self.count.setRange(1, 64)
        self.count.setSuffix(" GPU")
        self.count.setAccessibleName("Number of GPUs")
        self.count.setToolTip("How many such GPUs the plan may use (ZeRO / FSDP shard over them)")
        self.times.setBuddy(self.count)
        for w in (self.label, self.combo, self.custom, self.times, self.count):
            lay.addWidget(w)
        lay.addStretch(1)
        self._rebuild()
        self.combo.currentIndexChanged.connect(self._on_index)
        self.custom.valueChanged.connect(self._on_custom)
        self.count.valueChanged.connect(self._on_count)

    # -- the list -----------------------------------------------------------------------------

    def _header(self, text: str) -> None:
        self.combo.addItem(text, None)
        item = self.combo.model().item(self.combo.count() - 1) if isinstance(
            self.combo.model(), QStandardItemModel) else None
        if item is not None:
            item.setEnabled(False)
            f = item.font()
            f.setBold(True)
            item.setFont(f)

    def _rebuild(self) -> None:
        keep = self.current_key()
        self.combo.blockSignals(True)
        self.combo.clear()
        if self._detected or self._detected_errors:
            self._header("This machine")
            for c in self._detected:
                self.combo.addItem(self._detected_text(c), card_key(c))
            for e in self._detected_errors:
                self._header(e)
        elif self._have_machine:
            self._header("No NVIDIA GPU detected")
        self._header("What-if cards")
        for c in self._catalog:
            self.combo.addItem(f"{c.name} ({fmt_bytes(c.total_bytes, 0)})", card_key(c))
        self.combo.addItem("Custom size…", "custom")
        self.combo.blockSignals(False)
        if keep:
            self._select(keep, emit=False)

    @staticmethod
    def _detected_text(c: Card) -> str:
        return f"GPU {c.gpu_index}: {c.name} — {fmt_bytes(c.available_bytes)} free of {fmt_bytes(c.total_bytes)}"

    def set_gpus(self, gpus: list) -> None:
        """The detected GPUs (``GpuInfo``), after each probe."""
        cards, errors = [], []
        for g in gpus:
            try:
                cards.append(card_from_gpu(g))
            except Exception as exc:  # noqa: BLE001 - a GPU that cannot be read is listed, not used
                errors.append(f"GPU {g.index}: {exc}")
        first = not self._have_machine
        self._have_machine = True
        same = ([card_key(c) for c in cards] == [card_key(c) for c in self._detected]
                and errors == self._detected_errors and not first)
        self._detected, self._detected_errors = cards, errors
        if same:
            for i in range(self.combo.count()):
                key = self.combo.itemData(i)
                for c in cards:
                    if key == card_key(c):
                        self.combo.setItemText(i, self._detected_text(c))
        else:
            self._rebuild()
        if first or self._card is None:
            wanted = self._wanted
            self._wanted = None
            if wanted and self._select(wanted):
                return
            if self._card is None:
                self._select(card_key(cards[0]) if cards else f"catalog:{DEFAULT_CATALOG}")
            return
        if self._card is not None and self._card.kind == "detected":
            now = next((c for c in cards if c.gpu_index == self._card.gpu_index), None)
            if now is None:  # the GPU went away: fall back to a what-if card of the same size
                self._select(f"catalog:{DEFAULT_CATALOG}")
            elif abs(now.available_bytes - self._card.available_bytes) >= SIGNIFICANT_CHANGE:
                self._card = now
                self.card_changed.emit(now)

    # -- selection ------------------------------------------------------------------------------

    def select_key(self, key: str) -> bool:
        """Select the card ``key`` names. A detected GPU key before the first probe waits for
        it. False when the key names nothing (anymore)."""
        if key.startswith("gpu:") and not self._have_machine:
            self._wanted = key
            return True
        return self._select(key)

    def _select(self, key: str, emit: bool = True) -> bool:
        if key.startswith("custom:"):
            try:
                gib = float(key.split(":", 1)[1])
            except ValueError:
                return False
            idx = self.combo.findData("custom")
            self.custom.blockSignals(True)
            self.custom.setValue(gib)
            self.custom.blockSignals(False)
        else:
            idx = self.combo.findData(key)
        if idx < 0:
            return False
        self.combo.blockSignals(not emit)
        self.combo.setCurrentIndex(idx)
        self.combo.blockSignals(False)
        if emit:
            self._on_index(idx)
        return True

    def _card_for(self, key: str | None) -> Card | None:
        if key is None:
            return None
        if key == "custom":
            return card_from_vram(f"{self.custom.value()}GiB")
        for c in self._detected + self._catalog:
            if card_key(c) == key:
                return c
        return None

    def _on_index(self, idx: int) -> None:
        key = self.combo.itemData(idx)
        self.custom.setVisible(key == "custom")
        card = self._card_for(key)
        if card is not None and card != self._card:
            self._card = card
            self.card_changed.emit(card)

    def _on_custom(self, _value: float) -> None:
        if self.combo.currentData() == "custom":
            self._on_index(self.combo.currentIndex())

    def _on_count(self, n: int) -> None:
        self.gpus_changed.emit(n)

    def current_card(self) -> Card | None:
        return self._card

    def current_key(self) -> str | None:
        return card_key(self._card) if self._card is not None else self._wanted

    def gpu_count(self) -> int:
        return self.count.value()

    def set_gpu_count(self, n: int) -> None:
        self.count.setValue(max(1, min(64, int(n))))

    def detected_cards(self) -> list[Card]:
        return list(self._detected)

    def keys(self) -> list[str]:
        return [self.combo.itemData(i) for i in range(self.combo.count()) if self.combo.itemData(i)]
