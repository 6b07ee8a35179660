"""Hostile paths and huge files: folders, links, pipes, devices, unreadable and vanishing
files, names the OS refuses, sparse multi-GB files and header lengths of 2**63. Each gives
a ModelSpecError naming the file, reads only a header, and allocates nothing sized by
what the file claims (tracemalloc peaks)."""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

from cardfit.core.errors import ModelSpecError
from cardfit.core.specs import filecheck
from cardfit.core.specs.folder import load_config_file, spec_from_folder
from cardfit.core.specs.gguf_header import read_gguf, spec_from_gguf
from cardfit.core.specs.resolve import resolve_model
from cardfit.core.specs.safetensors_header import read_safetensors_header, read_safetensors_index
from fuzzing import ARRAY, STRING, U8, gguf_bytes, tiny_llama_gguf, tiny_llama_kvs, valid_safetensors

GiB = 1024**3
MiB = 1024**2
PEAK_LIMIT = 2 * MiB  # what reading a refused header may allocate, whatever the file claims

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")
not_root = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                              reason="root reads chmod 000 files, so there is nothing to refuse")


def refused(fn, *args, source=None, within_s: float = 20.0) -> ModelSpecError:
    """Run ``fn`` on a thread (a hang fails the test instead of stalling it) and return the
    ModelSpecError it raised."""
    box: dict = {}

    def go():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            box["exc"] = exc

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(within_s)
    assert not t.is_alive(), f"{fn.__name__} still running after {within_s} s"
    exc = box.get("exc")
    assert isinstance(exc, ModelSpecError), f"expected ModelSpecError, got {exc!r} / {box.get('value')!r}"
    if source is not None:
        assert exc.source == str(source) and str(exc).startswith(str(source))
    assert "\n" not in str(exc)
    return exc


def peak_bytes(fn, *args) -> int:
    tracemalloc.start()
    try:
        try:
            fn(*args)
        except ModelSpecError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def sparse(path: Path, head: bytes, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    if os.stat(path).st_blocks * 512 > 64 * MiB:  # pragma: no cover - no sparse files here
        path.unlink()
        pytest.skip("this filesystem does not keep sparse files sparse")
    return path


# -- kinds of paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "model.gguf"])
def test_a_folder_where_a_file_is_expected(tmp_path, name):
    path = tmp_path / name
    path.mkdir()
    reader = {"config.json": load_config_file, "model.safetensors": read_safetensors_header,
              "model.gguf": read_gguf}[name]
    exc = refused(reader, path, source=path)
    assert "folder" in str(exc)
    refused(resolve_model, str(path))  # as a model folder: it holds nothing


@pytest.mark.parametrize("reader,name", [(load_config_file, "config.json"),
                                          (read_safetensors_header, "m.safetensors"),
                                          (read_gguf, "m.gguf")])
def test_dangling_link(tmp_path, reader, name):
    path = tmp_path / name
    path.symlink_to(tmp_path / "gone")
    exc = refused(reader, path, source=path)
    assert "does not exist" in str(exc)
    refused(resolve_model, str(path))


@posix_only
@pytest.mark.parametrize("reader,name", [(load_config_file, "config.json"),
                                          (read_safetensors_header, "m.safetensors"),
                                          (read_gguf, "m.gguf")])
def test_named_pipe_does_not_block(tmp_path, reader, name):
    path = tmp_path / name
    os.mkfifo(path)
    exc = refused(reader, path, source=path, within_s=10)
    assert "not a regular file" in str(exc)


@posix_only
@pytest.mark.parametrize("reader,name", [(load_config_file, "config.json"),
                                          (read_safetensors_index, "model.safetensors.index.json"),
                                          (read_safetensors_header, "m.safetensors"),
                                          (read_gguf, "m.gguf")])
def test_link_to_an_endless_device_is_refused_without_reading(tmp_path, reader, name):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    path = tmp_path / name
    path.symlink_to("/dev/zero")  # size 0, and never ends: read_bytes() would eat all memory
    exc = refused(reader, path, source=path, within_s=10)
    assert "not a regular file" in str(exc)
    refused(resolve_model, str(path), within_s=10)


@not_root
@pytest.mark.parametrize("name,content", [("config.json", b"{}"), ("m.safetensors", valid_safetensors()),
                                          ("m.gguf", tiny_llama_gguf())])
def test_unreadable_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(0)
    try:
        exc = refused(resolve_model, str(path), source=path)
        assert "Permission denied" in str(exc)
    finally:
        path.chmod(0o644)


@not_root
def test_unreadable_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    folder.chmod(0)
    try:
        exc = refused(spec_from_folder, folder)
        assert "Permission denied" in str(exc)
    finally:
        folder.chmod(0o755)


def test_file_vanishing_between_check_and_read(tmp_path, monkeypatch):
    ghost = tmp_path / "ghost.safetensors"
    monkeypatch.setattr(Path, "exists", lambda self: True)  # it was there when resolve looked
    exc = refused(resolve_model, str(ghost), source=ghost)
    assert "cannot read" in str(exc)


def test_file_vanishing_while_a_folder_is_listed(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    real_iterdir = Path.iterdir

    def vanishing(self):
        if self == folder:
            raise FileNotFoundError(2, "No such file or directory", str(folder))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", vanishing)
    exc = refused(spec_from_folder, folder, source=folder)
    assert "No such file" in str(exc)


@pytest.mark.parametrize("text", ["a" * 5000, "/tmp/" + "b" * 300 + "/config.json", "x\0y.json", "\0"])
def test_names_the_os_refuses(text):
    exc = refused(resolve_model, text)
    assert len(str(exc)) < 1000


def test_non_utf8_file_name(tmp_path):
    if sys.platform == "darwin":
        pytest.skip("macOS file systems refuse non-UTF-8 names")
    raw_dir = os.fsencode(tmp_path)
    path = os.fsdecode(raw_dir + b"/m\xff\xfe.safetensors")
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", 2**63))
    exc = refused(resolve_model, path, source=path)
    assert exc.field == "header length"
    json.dumps(exc.to_json())  # lone surrogates are escaped, not a crash


def test_index_with_hostile_shard_names(tmp_path):
    for shard in ["\0.safetensors", "../x.safetensors", "a\nb.safetensors", ".hidden.safetensors", 7]:
        index = tmp_path / "model.safetensors.index.json"
        index.write_text(json.dumps({"weight_map": {"w": shard}}))
        exc = refused(read_safetensors_index, index, source=index)
        assert exc.field == "weight_map.w"


# -- sizes that ask for gigabytes -----------------------------------------------------------

@pytest.mark.parametrize("length", [2**63, 2**64 - 1, 2**40, 200 * MiB])
def test_safetensors_header_lengths_asking_for_gigabytes(tmp_path, length):
    # a sparse 4 GiB file: the length fits inside it or not, neither is read
    path = sparse(tmp_path / "huge.safetensors", struct.pack("<Q", length) + b"{", 4 * GiB)
    exc = refused(read_safetensors_header, path, source=path)
    assert exc.field == "header length"
    assert peak_bytes(read_safetensors_header, path) < PEAK_LIMIT


def test_sparse_multi_gb_config_json_is_refused_by_size(tmp_path):
    path = sparse(tmp_path / "config.json", b'{"model_type": "llama"', 4 * GiB)
    exc = refused(resolve_model, str(path), source=path)
    assert "limit" in str(exc)
    assert peak_bytes(resolve_model, str(path)) < PEAK_LIMIT


def test_sparse_multi_gb_gguf_with_huge_arrays_is_skipped_not_loaded(tmp_path):
    # a 3 GiB uint8 array inside a 4 GiB file: valid by size, skipped with a seek
    head = gguf_bytes([("general.architecture", STRING, "llama"), ("blob", ARRAY, (U8, []))])
    head = head.replace(struct.pack("<IIQ", ARRAY, U8, 0), struct.pack("<IIQ", ARRAY, U8, 3 * GiB))
    path = sparse(tmp_path / "huge.gguf", head, 4 * GiB)
    exc = refused(spec_from_gguf, path, source=path)
    assert exc.field == "llama.embedding_length"  # got past the array, to the missing shapes
    assert peak_bytes(spec_from_gguf, path) < PEAK_LIMIT


@pytest.mark.parametrize("n_kv,n_tensors", [(2**63, 0), (1, 2**63), (2**20, 0), (9, 2**40)])
def test_gguf_counts_asking_for_gigabytes(tmp_path, n_kv, n_tensors):
    path = sparse(tmp_path / "counts.gguf", gguf_bytes(tiny_llama_kvs(), n_kv=n_kv, n_tensors=n_tensors), 2 * GiB)
    refused(read_gguf, path, source=path)
    assert peak_bytes(read_gguf, path) < PEAK_LIMIT


def test_only_the_gguf_header_is_read(tmp_path, monkeypatch):
    data = b"\0" * (8 * MiB)
    path = tmp_path / "big.gguf"
    path.write_bytes(gguf_bytes(tiny_llama_kvs(), [("token_embd.weight", [64, 65536], 1, 0)], data))
    read_sizes: list[int] = []
    real_open = open

    def spy_open(*a, **kw):
        fh = real_open(*a, **kw)
        real_read = fh.read

        def read(n=-1):
            read_sizes.append(n)
            return real_read(n)

        fh.read = read
        return fh

    monkeypatch.setattr(filecheck, "open", spy_open, raising=False)
    spec = spec_from_gguf(path)
    assert spec.vocab_size == 65536
    assert read_sizes and all(0 <= n <= 4096 for n in read_sizes)
    assert sum(read_sizes) < 4096  # the header only, never the 8 MiB of tensor data


def test_permission_denied_as_root_would_not_see_it(tmp_path, monkeypatch):
    # The chmod 000 tests skip under root; the same OS error, injected, runs everywhere.
    path = tmp_path / "m.safetensors"
    path.write_bytes(valid_safetensors())

    def denied(*a, **kw):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(filecheck.os, "open", denied)
    for target in (path, tmp_path / "config.json", tmp_path / "m.gguf"):
        if not target.exists():
            target.write_bytes(b"{}")
        exc = refused(resolve_model, str(target), source=target)
        assert "Permission denied" in str(exc)


def test_unreadable_folder_listing_injected(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()

    def denied(self, pattern="*"):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(Path, "glob", denied)
    exc = refused(resolve_model, str(folder), source=folder)
    assert "Permission denied" in str(exc)
