"""Starting the GUI: ``make_app()`` (the QApplication, high-DPI and names set once) and
``run()`` (the window, or with ``screenshot`` an offscreen render of the populated window
to a PNG). ``main(argv)`` is the ``cardfit-gui`` entry point: the same as ``cardfit gui``.

Environment: ``CARDFIT_FAKE_MACHINE=detect.json`` shows that machine instead of probing
(docs and tests); ``CARDFIT_BENCH_FIRST_PAINT=1`` prints one line at the first paint and
quits (tools/bench_startup.py).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

_T0 = time.perf_counter()

SCREENSHOT_SIZE = (1440, 920)
SCREENSHOT_TIMEOUT_S = 60.0


def make_app(argv: list[str] | None = None):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from cardfit import __version__

    app = QApplication.instance()
    if app is None:
        # Fractional scale factors (150%) drawn as they are, not rounded to 2x.
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(list(argv) if argv else [sys.argv[0] if sys.argv else "cardfit"])
    app.setApplicationName("cardfit")
    app.setOrganizationName("cardfit")
    app.setApplicationDisplayName("cardfit")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("cardfit")
    return app


def _no_display() -> str | None:
    """Why no window can open here, or None. Qt would abort without a word of ours."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset). Use the "
            "command line (cardfit detect, cardfit estimate ...), or render the window with "
            "cardfit gui --screenshot FILE")


def _wait_until(app, predicate, timeout_s: float) -> bool:
    from PySide6.QtCore import QEventLoop

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def run(screenshot: str | None = None, model: str | None = None, workload=None,
        card: str | None = None, size: tuple[int, int] | None = None) -> int:
    if screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    else:
        why = _no_display()
        if why:
            print(f"cardfit: {why}", file=sys.stderr)
            return 2
    app = make_app()
    from cardfit.gui import settings as st
    from cardfit.gui.main_window import MainWindow

    if screenshot:
        from PySide6.QtCore import qInstallMessageHandler

        def quiet(mode, context, message, _prev=[None]):  # noqa: B006
            if "propagateSizeHints" not in message:
                sys.stderr.write(message + "\n")

        qInstallMessageHandler(quiet)
        # A fresh state, never the user's saved one: the picture is reproducible.
        tmp = tempfile.TemporaryDirectory(prefix="cardfit-shot-")
        st.redirect(tmp.name)
        w = MainWindow(restore=False, start_monitor=False, initial_model=model,
                       initial_workload=workload, initial_card=card)
        w.resize(*(size or SCREENSHOT_SIZE))
        w.show()
        ok = _wait_until(app, w.is_populated, SCREENSHOT_TIMEOUT_S)
        w.monitor.stop()
        _wait_until(app, lambda: False, 0.3)  # let the last results paint
        image = w.grab()
        saved = image.save(screenshot, "PNG")
        w.runner.wait(3000)
        w.close()
        tmp.cleanup()
        if not saved:
            print(f"cardfit gui: could not write {screenshot}", file=sys.stderr)
            return 2
        if not ok:
            print(f"cardfit gui: the window was not fully populated after {SCREENSHOT_TIMEOUT_S:.0f} s; "
                  f"wrote what it showed to {screenshot}", file=sys.stderr)
            return 1
        print(screenshot)
        return 0

    w = MainWindow(initial_model=model, initial_workload=workload, initial_card=card)
    if os.environ.get("CARDFIT_BENCH_FIRST_PAINT"):
        from PySide6.QtCore import QTimer

        def painted() -> None:
            print("cardfit-first-paint " + json.dumps({
                "seconds_since_app_import": time.perf_counter() - _T0,
                "torch_imported": "torch" in sys.modules}), flush=True)
            QTimer.singleShot(0, w.close)

        w.first_painted.connect(painted)
    w.show()
    return int(app.exec())


def main(argv: list[str] | None = None) -> int:
    """``cardfit-gui [options]``: the same as ``cardfit gui [options]``."""
    from cardfit.cli import main as cli_main

    argv = sys.argv[1:] if argv is None else list(argv)
    return cli_main(["gui", *argv])


if __name__ == "__main__":
    sys.exit(main())
