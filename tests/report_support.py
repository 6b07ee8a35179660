"""Shared makings of the report tests: a machine, a model (optionally with a hostile name),
and the fit-test fixture.

tests/data/fittest_result_fixture.json is hand-written after the FitTestResult contract
(core/fittest/result.py, schema "cardfit.fittest/1"): its headline figures (peak 17086349312
bytes, RSS, step time, versions) are those of the real H100 run of Llama 3.1 8B, inference
bf16, batch 1, 512+64 tokens (tests/data/gpu_measure_h100_part1.jsonl, first line); its
sample curve is drawn by hand (that run recorded marks, not samples). A fixture from a real
fit test replaces it once the launcher records one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cardfit.core.estimate.workload import Workload
from cardfit.core.hardware.cards import card_from_gpu, resolve_card
from cardfit.core.hardware.machine import MachineInfo
from cardfit.core.report.model import build_report
from cardfit.core.specs.resolve import resolve_model

DATA = Path(__file__).parent / "data"
FIT_FIXTURE = DATA / "fittest_result_fixture.json"
DETECT_H100 = DATA / "detect_h100.json"
MODEL = "meta-llama/Llama-3.1-8B"
# Markup, a script, a Markdown link to javascript:, table pipes and backticks at once.
HOSTILE = "<script>alert(1)</script> [x](javascript:alert(1)) a|b `c` & \"q\" <img src=x onerror=alert(2)>"


def machine() -> MachineInfo:
    return MachineInfo.from_json(DETECT_H100.read_text())


def fit_doc() -> dict:
    return json.loads(FIT_FIXTURE.read_text())


def spec(hostile: bool = False):
    s = resolve_model(MODEL)
    if hostile:
        s = dataclasses.replace(s, name=HOSTILE, id=HOSTILE, source=HOSTILE, architecture=HOSTILE,
                                notes=(HOSTILE,))
    return s


def report(hostile: bool = False, with_test: bool = True, cards: list | None = None):
    m = machine()
    fit = fit_doc() if with_test else None
    if hostile and fit is not None:
        fit["model"]["name"] = HOSTILE
        fit["gpu"]["name"] = HOSTILE
        fit["message"] = HOSTILE
        fit["phases"][0]["phase"] = HOSTILE
    w = Workload.from_json(fit_doc()["workload"])
    if cards is None:
        cards = [card_from_gpu(m.gpus[0]), resolve_card("4090")]
    return build_report(spec(hostile), w, cards, m, fit)
