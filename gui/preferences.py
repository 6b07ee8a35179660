"""Preferences: the fit-test interpreter (settings key "fittest/python", read by the
fit-test dialog) and how often the hardware panel refreshes."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit,
                               QPushButton, QSpinBox, QWidget)

from cardfit.gui import settings as st


class PreferencesDialog(QDialog):
    def __init__(self, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self._s = settings
        form = QFormLayout(self)
        self.python = QLineEdit(st.get_str(settings, "fittest/python"))
        self.python.setPlaceholderText("the Python that runs cardfit (needs torch and CUDA)")
        self.python.setAccessibleName("Fit-test Python interpreter")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.python, 1)
        row.addWidget(browse)
        form.addRow("Fit-test &Python:", row)
        self.interval = QSpinBox()
        self.interval.setRange(250, 60000)
        self.interval.setSingleStep(250)
        self.interval.setSuffix(" ms")
        self.interval.setValue(st.get_int(settings, "hardware/interval_ms", 1000))
        form.addRow("&Hardware refresh every:", self.interval)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Python interpreter for the fit test")
        if path:
            self.python.setText(path)

    def accept(self) -> None:
        self._s.setValue("fittest/python", self.python.text().strip())
        self._s.setValue("hardware/interval_ms", self.interval.value())
        super().accept()
