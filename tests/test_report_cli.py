"""`cardfit report`: every format from the command line, and one-line errors (exit 2) that
leave no file behind."""

from __future__ import annotations

import json
import re

import pytest

from cardfit.cli import main
from cardfit.core.estimate.workload import Workload
from cardfit.core.report.model import load_report
from report_support import DETECT_H100, FIT_FIXTURE, MODEL, fit_doc


def _run(capsys, *argv):
    rc = main(["report", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _error(capsys, tmp_path, *argv):
    rc, out, err = _run(capsys, *argv)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cardfit report: "), err
    return lines[0]


def test_json_report_with_test_and_recorded_machine(capsys, tmp_path):
    out = tmp_path / "r.json"
    rc, stdout, _ = _run(capsys, MODEL, "--with-test", FIT_FIXTURE, "--machine", DETECT_H100, "--out", out)
    assert rc == 0 and f"wrote {out}" in stdout
    r = load_report(out)
    # With the default workload options, the test's workload is the one reported.
    assert r.prediction.workload == Workload.from_json(fit_doc()["workload"]).to_json()
    assert r.machine.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert [c.name for c in r.cards] == ["NVIDIA H100 80GB HBM3"]
    assert r.fit_test.peak_device_bytes == 17086349312
    assert r.fit_test.predicted_bytes == r.prediction.total_bytes
    assert [n[:36] for n in r.notes] == ["When the test ran, cardfit predicted"]


def test_html_and_markdown_with_workload_flags_and_card(capsys, tmp_path):
    for suffix in (".html", ".md"):
        out = tmp_path / f"r{suffix}"
        rc, _, _ = _run(capsys, MODEL, "--task", "qlora", "--batch", "2", "--card", "4090",
                        "--machine", DETECT_H100, "--out", out)
        assert rc == 0
        text = out.read_text(encoding="utf-8")
        assert "QLoRA r16" in text and "GeForce RTX 4090" in text and "NVIDIA H100" in text


def test_works_without_a_gpu(capsys, tmp_path, monkeypatch):
    from cardfit.core.hardware import machine as machine_mod
    from cardfit.core.hardware.host import probe_host

    monkeypatch.setattr(machine_mod, "probe_machine",
                        lambda: machine_mod.MachineInfo(host=probe_host(), nvml_status="no_library",
                                                        nvml_message="NVML not found"))
    out = tmp_path / "r.json"
    rc, _, _ = _run(capsys, MODEL, "--out", out)
    assert rc == 0
    r = load_report(out)
    assert r.machine.gpus == [] and r.cards == [] and any("--card" in n for n in r.notes)
    rc, _, _ = _run(capsys, MODEL, "--vram", "24GB", "--out", out)
    assert rc == 0 and load_report(out).cards[0].name == "custom 24.0 GiB"


def test_pdf_from_cli(qapp, capsys, tmp_path):
    out = tmp_path / "r.pdf"
    rc, stdout, _ = _run(capsys, MODEL, "--with-test", FIT_FIXTURE, "--machine", DETECT_H100,
                         "--page-size", "Letter", "--out", out, "--json")
    assert rc == 0
    doc = json.loads(stdout)
    assert doc["format"] == "pdf" and doc["bytes"] == out.stat().st_size > 10_000
    assert out.read_bytes()[:5] == b"%PDF-"
    assert re.search(rb"/MediaBox \[0 0 612(\.0+)? 792(\.0+)?\]", out.read_bytes())


def test_unknown_suffix(capsys, tmp_path):
    line = _error(capsys, tmp_path, MODEL, "--vram", "24", "--out", tmp_path / "r.docx")
    assert "'.docx' is not a report format" in line
    assert list(tmp_path.iterdir()) == []


def test_missing_folder(capsys, tmp_path):
    line = _error(capsys, tmp_path, MODEL, "--vram", "24", "--out", tmp_path / "no" / "r.html")
    assert "does not exist" in line


def test_unwritable_output(capsys, tmp_path):
    (tmp_path / "r.html").mkdir()  # a folder where the file should go: fails even as root
    line = _error(capsys, tmp_path, MODEL, "--vram", "24", "--out", tmp_path / "r.html")
    assert "r.html" in line and "folder" in line
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"] and not any((tmp_path / "r.html").iterdir())


@pytest.mark.parametrize("content, message", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"schema": "cardfit.detect/1"}), "not a fit test result"),
    (json.dumps({**fit_doc(), "status": "great"}), "field 'status'"),
    (json.dumps({**fit_doc(), "peak_device_bytes": "16 GiB"}), "field 'peak_device_bytes'"),
    (json.dumps({**fit_doc(), "samples": {"t": 1}}), "field 'samples'"),
    (json.dumps({**fit_doc(), "workload": {"task": "dance"}}), "workload"),
])
def test_bad_with_test(capsys, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "r.html"
    line = _error(capsys, tmp_path, MODEL, "--with-test", bad, "--machine", DETECT_H100, "--out", out)
    assert "--with-test" in line and message in line, line
    assert not out.exists()


def test_missing_with_test_file(capsys, tmp_path):
    line = _error(capsys, tmp_path, MODEL, "--with-test", tmp_path / "nope.json", "--out", tmp_path / "r.md")
    assert "nope.json" in line and "cannot read" in line
    assert not (tmp_path / "r.md").exists()


def test_json_error_object(capsys, tmp_path):
    rc, out, _ = _run(capsys, MODEL, "--vram", "24", "--out", tmp_path / "r.txt", "--json")
    assert rc == 2 and json.loads(out)["error"]["type"] == "report"


def test_hostile_model_folder_name(capsys, tmp_path):
    src = tmp_path / "<b>x|`y`](javascript:z)"
    src.mkdir()
    cfg = json.loads((FIT_FIXTURE.parent / "gpu_measure_h100_part1.jsonl").read_text().splitlines()[0])["config"]
    cfg["architectures"] = ["LlamaForCausalLM"]
    (src / "config.json").write_text(json.dumps(cfg))
    for suffix in (".html", ".md"):
        out = tmp_path / f"r{suffix}"
        rc, _, err = _run(capsys, src, "--vram", "24", "--machine", DETECT_H100, "--out", out)
        assert rc == 0, err
        text = out.read_text(encoding="utf-8")
        if suffix == ".html":
            assert "<b>x" not in text and "&lt;b&gt;x|`y`](javascript:z)" in text
        else:
            assert not re.search(r"(?<!\\)<", text) and not re.search(r"(?<!\\)\]\(", text)
            assert "\\<b\\>x\\|\\`y\\`\\]\\(javascript:z\\)" in text


def test_help_lists_report(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = capsys.readouterr().out
    assert "--with-test" in out and "--out" in out and "--page-size" in out
