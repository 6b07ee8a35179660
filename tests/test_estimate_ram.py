"""The engine's host-RAM figure against the RAM peak of loading a model as users do
(tests/gpu/load_ram.py on the H100 machine, tests/data/load_ram_h100.jsonl): Llama 3.2 1B
saved as one 2.47 GB safetensors file, loaded in fresh processes three ways."""

from __future__ import annotations

import json
from pathlib import Path

from cardfit.core.estimate.estimator import estimate
from cardfit.core.estimate.workload import Workload
from cardfit.core.specs.catalog import find_model

RECORDS = {r["mode"]: r for r in map(json.loads, (Path(__file__).parent / "data" / "load_ram_h100.jsonl")
                                      .read_text().splitlines()) if "mode" in r}


def test_three_ways_of_loading_were_measured():
    assert set(RECORDS) == {"hf-cuda", "mmap-cpu", "read-cpu"}
    file_bytes = RECORDS["hf-cuda"]["file_bytes"]
    # Memory-mapped, untouched pages cost nothing; reading the file whole costs it twice
    # (the bytes, then the tensors made from them).
    assert RECORDS["mmap-cpu"]["peak_rss"] - RECORDS["mmap-cpu"]["rss_before"] < 0.05 * file_bytes
    assert RECORDS["read-cpu"]["peak_rss"] - RECORDS["read-cpu"]["rss_before"] > 1.9 * file_bytes


def test_the_ram_figure_covers_loading_to_the_gpu_and_not_by_much():
    # from_pretrained(device_map="cuda"): the runtime plus the shard passing through the
    # page cache, which is what the engine counts (estimator._ram).
    spec = find_model("meta-llama/Llama-3.2-1B")
    ram = estimate(spec, Workload(task="infer")).ram_bytes
    measured = RECORDS["hf-cuda"]["peak_rss"]
    assert measured <= ram <= 1.35 * measured  # 4.06 GiB predicted, 3.20 GiB measured
