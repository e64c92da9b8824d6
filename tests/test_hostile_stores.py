"""A store is untrusted input (issue 28): its index may make srlab read, write or delete only
the store's own files, and every bad entry is one line, never a traceback or lost memory.

Each test builds one hostile store in tmp_path, the way an attacker who can edit a shared
store would, and checks that the victim file outside the store is unchanged and the error is
one line (through the CLI's own wrapper where that is cheap).
"""
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from srlab.cli.prepare import main as prepare_cli
from srlab.data.datasets import PreparedImages, usable
from srlab.data.prepared import load_image, open_store, prepare_store, store_scale
from srlab.data.store_files import write_file
from srlab.errors import SrlabError
from tests.test_prepare import _rgb


def _store(tmp_path: Path, n: int = 1) -> tuple[Path, Path]:
    """(input folder, store) with n tiny images."""
    src, dst = tmp_path / "src", tmp_path / "store"
    src.mkdir()
    for i in range(n):
        Image.fromarray(_rgb(i)).save(src / f"img{i}.png")
    prepare_store(src, dst, progress=False)
    return src, dst


def _edit(dst: Path, **fields) -> dict:
    """Set fields of the first index entry (what an attacker with write access does)."""
    index = json.loads((dst / "index.json").read_text())
    index["images"][0].update(fields)
    (dst / "index.json").write_text(json.dumps(index))
    return index["images"][0]


def _touch(src: Path) -> None:
    """Change every source's mtime: the next srlab-prepare re-makes (and deletes the old file of) each entry."""
    for p in src.iterdir():
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def _victim(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, _rgb(7), allow_pickle=False)  # a valid image array: only the path check stops it
    return path.read_bytes()


def _one_line(call) -> str:
    with pytest.raises(SrlabError) as err:
        call()
    message = str(err.value)
    assert message and "\n" not in message
    return message


def _cli(src: Path, dst: Path, capsys) -> str:
    """srlab-prepare in-process (its @hydra.main body with a config): the printed error line."""
    cfg = OmegaConf.create({"input": str(src), "output": str(dst), "progress": False})
    with pytest.raises(SystemExit) as exit_:
        prepare_cli(cfg)
    assert exit_.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_absolute_file_in_index_is_never_deleted(tmp_path, capsys):
    src, dst = _store(tmp_path)
    victim = tmp_path / "home" / "thesis.npy"
    before = _victim(victim)
    _edit(dst, file=str(victim))
    _touch(src)  # the entry is "changed": before the fix its old file (the victim) was unlinked
    line = _cli(src, dst, capsys)
    assert "'img0'" in line and str(dst) in line and "not a relative path" in line
    assert victim.read_bytes() == before
    assert "not a relative path" in _one_line(lambda: open_store(dst))


def test_dotdot_file_is_neither_read_nor_deleted(tmp_path):
    src, dst = _store(tmp_path)
    victim = tmp_path / "x.npy"
    before = _victim(victim)
    entry = _edit(dst, file="../x.npy")
    assert "'img0'" in _one_line(lambda: open_store(dst))
    assert "not a relative path" in _one_line(lambda: load_image(dst, entry))
    _touch(src)
    _one_line(lambda: prepare_store(src, dst, progress=False))
    assert victim.read_bytes() == before


def test_symlinked_images_folder_is_refused(tmp_path, capsys):
    src, dst = _store(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    before = _victim(elsewhere / "000099.npy")  # orphans the sweep would delete, were it followed
    (elsewhere / "notes.tmp").write_text("mine")
    for p in (dst / "images").iterdir():
        p.rename(elsewhere / p.name)
    (dst / "images").rmdir()
    (dst / "images").symlink_to(elsewhere, target_is_directory=True)
    line = _cli(src, dst, capsys)
    assert "images is a symlink" in line
    assert (elsewhere / "000099.npy").read_bytes() == before and (elsewhere / "notes.tmp").read_text() == "mine"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["000000.npy", "000099.npy", "notes.tmp"]


def test_symlinked_entry_pointing_outside_is_neither_read_nor_deleted(tmp_path):
    src, dst = _store(tmp_path)
    victim = tmp_path / "private" / "secret.npy"
    before = _victim(victim)
    (dst / "images" / "000000.npy").unlink()
    (dst / "images" / "000000.npy").symlink_to(victim)
    message = _one_line(lambda: open_store(dst))
    assert "'img0'" in message and str(dst) in message and "outside the store" in message
    entry = json.loads((dst / "index.json").read_text())["images"][0]
    assert "outside the store" in _one_line(lambda: load_image(dst, entry))
    _touch(src)
    prepare_store(src, dst, progress=False)  # re-makes the entry; the old name is a link: left alone
    prepare_store(src, dst, progress=False)  # the sweep meets the orphan link: left alone too
    assert victim.read_bytes() == before
    assert len(open_store(dst)) == 1


def test_symlink_at_a_written_name_is_replaced_not_written_through(tmp_path):
    src, dst = _store(tmp_path)
    victim = tmp_path / "victim.json"
    victim.write_text((dst / "index.json").read_text())  # a valid index, so the store opens through it
    before = victim.read_bytes()
    (dst / "index.json").unlink()
    (dst / "index.json").symlink_to(victim)
    Image.fromarray(_rgb(5)).save(src / "new.png")
    assert prepare_store(src, dst, progress=False)["added"] == 1
    assert victim.read_bytes() == before and not (dst / "index.json").is_symlink()
    other = tmp_path / "other.bin"
    other.write_bytes(b"keep")
    (dst / "images" / "link").symlink_to(other)
    write_file(dst / "images" / "link", lambda f: f.write(b"new"))
    assert other.read_bytes() == b"keep" and (dst / "images" / "link").read_bytes() == b"new"


class _Marker:
    """Unpickling this creates a file: proof that a store file ran code."""

    path = ""

    def __reduce__(self):
        return open, (self.path, "w")


def test_object_dtype_file_is_one_line_and_never_unpickled(tmp_path, caplog):
    _, dst = _store(tmp_path)
    entry = open_store(dst)[0]
    _Marker.path = str(tmp_path / "marker")
    arr = np.empty((entry["height"], entry["width"], 3), dtype=object)
    arr[0, 0, 0] = _Marker()
    np.save(dst / entry["file"], arr, allow_pickle=True)
    assert "Python objects" in _one_line(lambda: load_image(dst, entry))
    with caplog.at_level(logging.WARNING):
        assert len(usable(PreparedImages(dst, [entry]), 4, "training", decode=True)) == 0  # skipped, no crash
    assert "Python objects" in caplog.text
    assert not (tmp_path / "marker").exists()


def test_height_not_a_number_is_one_line(tmp_path, capsys):
    src, dst = _store(tmp_path)
    _edit(dst, height="x")
    assert "height='x'" in _one_line(lambda: open_store(dst))
    assert "height='x'" in _cli(src, dst, capsys)
    index = json.loads((dst / "index.json").read_text())
    (dst / "index.json").write_text(json.dumps({**index, "scale": "x", "images": []}))
    assert "scale='x'" in _one_line(lambda: store_scale(dst))


def test_declared_size_not_matching_the_file_is_one_line(tmp_path, caplog):
    _, dst = _store(tmp_path, n=2)
    entries = open_store(dst)
    lying = {**entries[0], "height": entries[0]["height"] * 1000}  # would map far past the file
    assert "declares 20000x28x3 uint8" in _one_line(lambda: load_image(dst, lying))
    truncated = dst / entries[1]["file"]
    truncated.write_bytes(truncated.read_bytes()[:-100])
    assert "bytes" in _one_line(lambda: load_image(dst, entries[1]))
    (dst / "images" / "junk.npy").write_bytes(b"GIF89a not an array")
    assert "not a .npy array" in _one_line(lambda: load_image(dst, {**entries[0], "file": "images/junk.npy"}))
    with caplog.at_level(logging.WARNING):  # training skips both, one warning each
        assert len(usable(PreparedImages(dst, [lying, entries[1]]), 4, "training", decode=True)) == 0
    assert caplog.text.count("skipped training image") == 2


def test_store_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        _, dst = _store(tmp_path)
    finally:
        os.umask(old)
    files = [dst / "index.json", *(dst / "images").iterdir()]
    assert files and all(p.stat().st_mode & 0o777 == 0o640 for p in files)  # not mkstemp's 0600


def test_odd_things_in_images_are_left_alone(tmp_path):
    src, dst = _store(tmp_path)
    (dst / "images" / "000050.npy").mkdir()  # a folder where an orphan file could be
    outside = tmp_path / "kept.npy"
    before = _victim(outside)
    (dst / "images" / "000051.npy").symlink_to(outside)
    Image.fromarray(_rgb(3)).save(src / "more.png")
    assert prepare_store(src, dst, progress=False)["added"] == 1  # no traceback
    assert (dst / "images" / "000050.npy").is_dir() and outside.read_bytes() == before
    assert {e["file"] for e in open_store(dst)} == {"images/000000.npy", "images/000052.npy"}


def test_deleted_store_file_is_remade_by_a_rerun(tmp_path):
    src, dst = _store(tmp_path)
    (dst / open_store(dst)[0]["file"]).unlink()
    assert "srlab-prepare" in _one_line(lambda: open_store(dst))  # its hint now works:
    assert prepare_store(src, dst, progress=False)["updated"] == 1
    assert len(open_store(dst)) == 1


def test_input_walk_does_not_follow_symlinked_folders(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "store"
    src.mkdir()
    Image.fromarray(_rgb(0)).save(src / "mine.png")
    (tmp_path / "other").mkdir()
    Image.fromarray(_rgb(1)).save(tmp_path / "other" / "theirs.png")
    (src / "link").symlink_to(tmp_path / "other", target_is_directory=True)
    prepare_store(src, dst, progress=False)
    assert [e["name"] for e in open_store(dst)] == ["mine"]
