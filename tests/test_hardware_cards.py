"""The what-if GPU catalog and turning --card / --vram into a Card."""

from __future__ import annotations

import json
import re

import pytest

from cardfit.core.errors import UsageError
from cardfit.core.hardware.cards import (Card, card_from_gpu, card_from_vram, find_card, load_catalog,
                                         resolve_card)
from cardfit.core.hardware.gpu import GpuInfo
from cardfit.core.units import GiB, MiB
from cardfit.resources import resource_path
from fakes import nvml_library_present, real_nvml, use_fake_nvml  # noqa: F401
from fakes.fake_nvml import rtx4090

CATALOG = load_catalog()
BY_ID = {c.id: c for c in CATALOG}
ROWS = json.loads(resource_path("gpus.json").read_text())["gpus"]

# Compute capability per architecture (CUDA GPUs list, https://developer.nvidia.com/cuda-gpus).
ARCH_CC = {"Volta": {"7.0"}, "Turing": {"7.5"}, "Ampere": {"8.0", "8.6"}, "Ada Lovelace": {"8.9"},
           "Hopper": {"9.0"}, "Blackwell": {"10.0", "12.0"}}


# -- the catalog's data -----------------------------------------------------------------------

def test_catalog_size_and_unique_slug_ids():
    assert len(CATALOG) >= 45
    ids = [c.id for c in CATALOG]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in ids)
    assert len({c.name.lower() for c in CATALOG}) == len(CATALOG)


def test_every_row_has_a_source_url():
    for row in ROWS:
        assert re.fullmatch(r"https://(www\.)?(nvidia\.com|techpowerup\.com)/\S+", row["source"]), row["id"]


def test_sizes_and_bandwidths_are_plausible():
    for c in CATALOG:
        assert 6 * GiB - 1 <= c.total_bytes <= 192 * GiB, c.id
        assert 250e9 <= c.bandwidth_bytes_per_s <= 8.5e12, c.id
        assert c.available_bytes == c.total_bytes and c.kind == "catalog"


def test_bf16_and_compute_capability_follow_the_architecture():
    for c in CATALOG:
        assert c.compute_capability in ARCH_CC[c.architecture], c.id
        assert c.bf16 == (float(c.compute_capability) >= 8.0), c.id


def test_the_cards_people_plan_around_are_there():
    want = {"rtx-2060", "rtx-2080-ti", "rtx-3060-12gb", "rtx-3060-ti", "rtx-3070", "rtx-3080-10gb",
            "rtx-3080-12gb", "rtx-3090", "rtx-3090-ti", "rtx-4060", "rtx-4060-ti-8gb", "rtx-4060-ti-16gb",
            "rtx-4070", "rtx-4070-ti", "rtx-4070-super", "rtx-4080", "rtx-4080-super", "rtx-4090",
            "rtx-5070", "rtx-5070-ti", "rtx-5080", "rtx-5090", "rtx-4090-laptop", "rtx-4080-laptop",
            "rtx-3080-laptop-8gb", "rtx-3080-laptop-16gb", "rtx-a2000", "rtx-a4000", "rtx-a4500",
            "rtx-a5000", "rtx-a6000", "rtx-4000-ada", "rtx-5000-ada", "rtx-6000-ada", "t4", "l4", "a10",
            "a10g", "l40", "l40s", "v100-16gb", "v100-32gb", "a100-40gb-pcie", "a100-40gb-sxm",
            "a100-80gb-pcie", "a100-80gb-sxm", "h100-pcie", "h100-sxm", "h100-nvl", "h200", "b200"}
    assert want <= set(BY_ID)


def test_spot_values_from_the_datasheets():
    assert BY_ID["rtx-4090"].total_bytes == 24 * GiB
    assert BY_ID["rtx-4090"].bandwidth_bytes_per_s == 1008e9
    assert BY_ID["rtx-4090-laptop"].total_bytes == 16 * GiB  # not the desktop's 24
    assert BY_ID["rtx-4080-laptop"].total_bytes == 12 * GiB
    assert BY_ID["t4"].bf16 is False and BY_ID["v100-32gb"].bf16 is False
    # Measured NVML total of an H100 80GB HBM3 (tests/data/gpu_measure_h100_part1.jsonl).
    assert BY_ID["h100-sxm"].total_bytes == 85_520_809_984
    assert BY_ID["h100-sxm"].bandwidth_bytes_per_s == 3.35e12


def test_broken_catalogs_are_rejected(tmp_path):
    good = dict(ROWS[0])
    missing = {k: v for k, v in good.items() if k != "source"}
    (tmp_path / "a.json").write_text(json.dumps({"gpus": [missing]}))
    with pytest.raises(ValueError, match="'source'"):
        load_catalog(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"gpus": [good, good]}))
    with pytest.raises(ValueError, match="twice"):
        load_catalog(tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps({"gpus": [dict(good, bf16="yes")]}))
    with pytest.raises(ValueError, match="bf16"):
        load_catalog(tmp_path / "c.json")


# -- finding a card by what users type ----------------------------------------------------------

@pytest.mark.parametrize("text, card_id", [
    ("4090", "rtx-4090"), ("rtx 4090", "rtx-4090"), ("RTX4090", "rtx-4090"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("rtx-4090", "rtx-4090"),
    ("4090 laptop", "rtx-4090-laptop"), ("RTX 4090 Mobile", "rtx-4090-laptop"),
    ("h100-sxm", "h100-sxm"), ("H100 SXM5", "h100-sxm"), ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("h100 pcie", "h100-pcie"), ("a100 80gb sxm", "a100-80gb-sxm"), ("A100-SXM4-40GB", "a100-40gb-sxm"),
    ("3060", "rtx-3060-12gb"), ("3080 12gb", "rtx-3080-12gb"), ("4070 super", "rtx-4070-super"),
    ("4070 ti super", "rtx-4070-ti-super"), ("4060 ti 16gb", "rtx-4060-ti-16gb"),
    ("a10", "a10"), ("A10G", "a10g"), ("t4", "t4"), ("Tesla T4", "t4"), ("l40s", "l40s"),
    ("L40", "l40"), ("a6000", "rtx-a6000"), ("rtx 6000 ada", "rtx-6000-ada"), ("2080ti", "rtx-2080-ti"),
    ("  B200 ", "b200"), ("3080 laptop 16gb", "rtx-3080-laptop-16gb"),
])
def test_find_card_is_tolerant(text, card_id):
    assert find_card(text).id == card_id


@pytest.mark.parametrize("text, among", [
    ("h100", {"h100-pcie", "h100-sxm", "h100-nvl"}),
    ("a100", {"a100-40gb-pcie", "a100-40gb-sxm", "a100-80gb-pcie", "a100-80gb-sxm"}),
    ("4060 ti", {"rtx-4060-ti-8gb", "rtx-4060-ti-16gb"}),
    ("3080", {"rtx-3080-10gb", "rtx-3080-12gb"}),
])
def test_ambiguous_names_list_the_candidates(text, among):
    with pytest.raises(UsageError) as err:
        find_card(text)
    msg = str(err.value)
    assert "several" in msg and all(i in msg for i in among)


@pytest.mark.parametrize("text, close", [("4095", "rtx-4090"), ("rtx 4900", "rtx-4090"),
                                         ("H10O", "h100-pcie"), ("radeon 7900", None), ("", None)])
def test_unknown_cards_suggest_close_ones(text, close):
    with pytest.raises(UsageError) as err:
        find_card(text)
    msg = str(err.value)
    if close:
        assert "Close:" in msg and close in msg
    if text:
        assert "--vram" in msg


def _gpu(index, free_gib=20.0, total_gib=24.0, **kw):
    return GpuInfo(index=index, name=f"Fake GPU {index}", memory_total_bytes=int(total_gib * GiB),
                   memory_free_bytes=int(free_gib * GiB),
                   memory_used_bytes=int((total_gib - free_gib) * GiB), compute_capability="8.9",
                   memory_bus_width_bits=384, memory_clock_max_mhz=10501, **kw)


@pytest.mark.parametrize("text, index", [("cuda:0", 0), ("gpu0", 0), ("GPU 1", 1), ("cuda:1", 1),
                                         ("gpu:1", 1), ("nvidia1", 1)])
def test_detected_gpus_by_index(text, index):
    gpus = [_gpu(0, free_gib=10), _gpu(1, free_gib=20)]
    card = find_card(text, gpus)
    assert card.kind == "detected" and card.gpu_index == index
    assert card.available_bytes == gpus[index].memory_free_bytes  # judged against free
    assert card.total_bytes == 24 * GiB and card.bf16 is True
    assert card.bandwidth_bytes_per_s == pytest.approx(1008.1e9, rel=1e-3)
    assert card.label.startswith(f"GPU {index}: Fake GPU {index}")


def test_detected_index_out_of_range_or_no_gpu():
    with pytest.raises(UsageError, match="no GPU 3.*cuda:0, cuda:1"):
        find_card("cuda:3", [_gpu(0), _gpu(1)])
    with pytest.raises(UsageError, match="no NVIDIA GPU detected.*--vram"):
        find_card("cuda:0", [])


def test_detected_gpu_with_an_error_cannot_be_a_card():
    with pytest.raises(UsageError, match="could not be read"):
        card_from_gpu(GpuInfo(index=0, error="gpu is lost"))
    with pytest.raises(UsageError, match="--vram"):
        card_from_gpu(GpuInfo(index=0, name="odd"))


def test_card_from_vram():
    c = card_from_vram("24GB")
    assert (c.kind, c.total_bytes, c.available_bytes) == ("custom", 24 * GiB, 24 * GiB)
    assert c.bf16 is None and c.bandwidth_bytes_per_s is None and c.name == "custom 24.0 GiB"
    assert card_from_vram("16384MiB").total_bytes == 16384 * MiB
    assert card_from_vram(80).total_bytes == 80 * GiB
    with pytest.raises(UsageError):
        card_from_vram("lots")


def test_resolve_card_choices():
    gpus = [_gpu(0, free_gib=5)]
    assert resolve_card("4090", None, gpus).id == "rtx-4090"
    assert resolve_card(None, "12GB", gpus).total_bytes == 12 * GiB
    assert resolve_card(None, None, gpus).gpu_index == 0
    with pytest.raises(UsageError, match="either --card or --vram"):
        resolve_card("4090", "24GB", gpus)


def test_resolve_card_skips_a_broken_first_gpu():
    gpus = [GpuInfo(index=0, error="GPU is lost"), _gpu(1)]
    assert resolve_card(None, None, gpus).gpu_index == 1
    with pytest.raises(UsageError, match="no usable NVIDIA GPU.*GPU is lost"):
        resolve_card(None, None, gpus[:1])


def test_resolve_card_without_any_gpu_says_what_to_pass():
    with pytest.raises(UsageError) as err:
        resolve_card(None, None, [])
    msg = str(err.value)
    assert "no NVIDIA GPU detected" in msg and "--card" in msg and "--vram" in msg


@pytest.mark.skipif(nvml_library_present(), reason="this machine has the NVIDIA driver library")
def test_resolve_card_probes_for_real_and_explains(real_nvml):
    with pytest.raises(UsageError) as err:
        resolve_card(None, None)
    assert "libnvidia-ml" in str(err.value) and "--vram" in str(err.value)


def test_resolve_card_probes_through_the_nvml_door(use_fake_nvml):
    use_fake_nvml(rtx4090())
    card = resolve_card(None, None)
    assert card.kind == "detected" and card.name == "NVIDIA GeForce RTX 4090"
    assert card.available_bytes == 20 * GiB
    assert find_card("cuda:0").available_bytes == 20 * GiB


def test_card_json_round_trip():
    for c in (BY_ID["rtx-4090"], card_from_vram("8GB"), card_from_gpu(_gpu(0))):
        d = c.to_json()
        json.dumps(d)
        assert Card.from_json(d) == Card.from_json(json.loads(json.dumps(d)))
        assert Card.from_json(d).total_bytes == c.total_bytes
