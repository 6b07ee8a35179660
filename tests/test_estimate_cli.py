"""`cardfit estimate`: a workload a real run cannot do (longer than a learned position
table) is still estimated, with the reason on its own line and in the JSON."""

from __future__ import annotations

import json

from cardfit.cli import main


def test_a_run_past_gpt2s_positions_is_estimated_with_a_warning(capsys):
    argv = ["estimate", "openai-community/gpt2", "--task", "infer", "--dtype", "fp16",
            "--prompt", "1024", "--new", "128", "--vram", "80GB"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    (line,) = [x for x in text.splitlines() if x.startswith("Warning:")]
    assert "1,152" in line and "1,024 learned positions" in line
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["warnings"] == [line[len("Warning: "):]]
    assert main(["estimate", "openai-community/gpt2", "--prompt", "896", "--new", "128", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_the_report_carries_the_warning(capsys, tmp_path):
    out = tmp_path / "r.json"
    assert main(["report", "openai-community/gpt2", "--prompt", "1024", "--new", "128",
                 "--vram", "24GB", "-o", str(out)]) == 0
    notes = json.loads(out.read_text())["notes"]
    assert any("1,024 learned positions" in n for n in notes)
