"""core/report/model.py: what a report holds, and its JSON round trip."""

from __future__ import annotations

import json

import pytest

from cardfit.core.errors import ReportError
from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.workload import Workload
from cardfit.core.hardware.cards import card_from_vram
from cardfit.core.report.model import MAX_CURVE_SAMPLES, SCHEMA, Report, build_report, thin_samples
from report_support import HOSTILE, fit_doc, machine, report, spec


def test_report_holds_machine_model_prediction_cards_and_fit_test():
    r = report()
    m = r.machine
    assert m.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert m.gpus[0].driver_version == "580.159.04" and m.gpus[0].cuda_driver_version == "13.0"
    assert m.gpus[0].memory_free_bytes == 85017493504
    assert m.ram_total_bytes == 135148564480 and m.os.startswith("Ubuntu")
    assert r.model.params == spec().param_counts().total and r.model.architecture == "LlamaForCausalLM"
    e = estimate(spec(), Workload.from_json(fit_doc()["workload"]))
    assert r.prediction.total_bytes == e.total_bytes
    assert [c.key for c in r.prediction.components] == [c.key for c in e.components]
    assert sum(c.bytes for c in r.prediction.components) == r.prediction.total_bytes
    h100, rtx = r.cards
    assert h100.kind == "detected" and h100.fits and h100.available_bytes == 85017493504
    assert rtx.kind == "catalog" and rtx.headroom_bytes == rtx.available_bytes - e.total_bytes
    for c in r.cards:
        assert c.plans and c.sentence
        assert c.best_plan == next(p.label for p in c.plans if p.fits)
        assert c.max_batch >= 1 and c.max_seq >= 128 and c.seq_kind == "prompt"
    f = r.fit_test
    assert f.status == "fits" and f.peak_device_bytes == 17086349312
    assert f.error_pct == pytest.approx((f.predicted_bytes - 17086349312) / 17086349312 * 100)
    assert f.samples_total == len(fit_doc()["samples"]) == len(f.samples)
    assert r.assumptions and all(isinstance(a, str) for a in r.assumptions)
    # The fit test ran the reported workload and model; it is measured against this report's
    # prediction, and the one recorded when it ran (an older cardfit's) is kept in a note.
    assert f.predicted_bytes == e.total_bytes
    assert len(r.notes) == 1 and r.notes[0].startswith("When the test ran, cardfit predicted")


def test_card_too_small_is_judged_no_and_has_no_best_plan_when_nothing_fits():
    r = report(with_test=False, cards=[card_from_vram("2GB")])
    (c,) = r.cards
    assert c.status == "no" and not c.fits and c.headroom_bytes < 0
    assert c.best_plan is None and c.max_batch is None and c.max_seq is None
    assert c.sentence.startswith("nothing fits")


def test_round_trip_is_equal():
    for r in (report(), report(hostile=True), report(with_test=False, cards=[])):
        assert Report.from_json(r.to_json()) == r
        assert Report.from_json(r.dumps()) == r
        assert Report.from_json(json.loads(json.dumps(r.to_json()))) == r


def test_without_machine_or_cards_says_so():
    r = build_report(spec(), Workload(), [], None)
    assert r.machine is None and r.cards == [] and r.fit_test is None
    assert any("--card" in n for n in r.notes)
    assert Report.from_json(r.to_json()) == r


def test_fit_test_of_another_workload_or_model_is_noted():
    fit = fit_doc()
    fit["model"] = {"id": "someone/other", "name": "Other", "params": 1}
    r = build_report(spec(), Workload(task="lora"), [], machine(), fit)
    assert any("another workload" in n for n in r.notes)
    assert any("someone/other" in n for n in r.notes)


def test_missing_prediction_and_error_are_filled_in():
    fit = fit_doc()
    fit["predicted_bytes"] = None
    fit["error_pct"] = None
    w = Workload.from_json(fit["workload"])
    r = build_report(spec(), w, [], None, fit)
    assert r.fit_test.predicted_bytes == estimate(spec(), w).total_bytes
    assert r.fit_test.error_pct == pytest.approx(
        (r.fit_test.predicted_bytes - 17086349312) / 17086349312 * 100)


def test_a_test_recorded_with_the_same_prediction_needs_no_note():
    fit = fit_doc()
    w = Workload.from_json(fit["workload"])
    fit["predicted_bytes"] = estimate(spec(), w).total_bytes
    fit["error_pct"] = 1.25  # recorded by the test: kept as it is
    r = build_report(spec(), w, [], None, fit)
    assert not [n for n in r.notes if "When the test ran" in n] and r.fit_test.error_pct == 1.25


def test_long_curves_are_thinned_keeping_the_peak():
    samples = [{"t": i / 20, "phase": "step", "device_used": 1000 + (i % 97)} for i in range(12000)]
    samples[7777]["device_used"] = 10**9
    out = thin_samples(samples)
    assert len(out) == MAX_CURVE_SAMPLES
    assert max(s["device_used"] for s in out) == 10**9
    assert [s["t"] for s in out] == sorted(s["t"] for s in out)
    fit = fit_doc()
    fit["samples"] = samples
    r = build_report(spec(), Workload(), [], None, fit)
    assert len(r.fit_test.samples) == MAX_CURVE_SAMPLES and r.fit_test.samples_total == 12000


def test_hostile_strings_are_kept_verbatim_in_the_data():
    r = report(hostile=True)
    assert r.model.name == HOSTILE and r.fit_test.gpu_name == HOSTILE


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema="cardfit.detect/1"), "not a cardfit report"),
    (lambda d: d.update(schema="cardfit.report/2"), "not supported"),
    (lambda d: d["model"].pop("name"), "report.model.name' is missing"),
    (lambda d: d["prediction"].update(total_bytes="12 GiB"), "report.prediction.total_bytes"),
    (lambda d: d["cards"][0].update(fits="yes"), "report.cards[0].fits"),
    (lambda d: d["fit_test"].update(samples={}), "report.fit_test.samples"),
    (lambda d: d.update(machine=[]), "report.machine"),
])
def test_bad_documents_name_the_field(mutate, message):
    d = report().to_json()
    mutate(d)
    with pytest.raises(ReportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Report.from_json(d)


def test_not_json_and_not_an_object():
    with pytest.raises(ReportError, match="invalid JSON"):
        Report.from_json("{nope")
    with pytest.raises(ReportError, match="not a JSON object"):
        Report.from_json("[1, 2]")


def test_unknown_keys_are_ignored():
    r = report()
    d = r.to_json()
    d["added_by_a_newer_cardfit"] = 1
    d["model"]["also_new"] = {"x": 1}
    assert Report.from_json(d) == r


def test_schema_is_first_and_named():
    d = report().to_json()
    assert next(iter(d)) == "schema" and d["schema"] == SCHEMA == "cardfit.report/1"


def test_built_from_a_fit_test_result_object():
    result = pytest.importorskip("cardfit.core.fittest.result")
    fit = result.FitTestResult.from_json(fit_doc())  # the fixture follows the contract
    w = Workload.from_json(fit_doc()["workload"])
    r = build_report(spec(), w, [None], machine(), fit)  # the GUI may have no card yet
    assert r.cards == []
    assert r.fit_test.peak_device_bytes == fit.peak_device_bytes
    assert r.fit_test.samples_total == len(fit.samples) and r.fit_test.gpu_name == fit.gpu["name"]
    assert Report.from_json(r.to_json()) == r
