import json

import pytest

from two4two.io import atomic_write, atomic_write_files, atomic_write_json, atomic_write_text


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    target = atomic_write_text(tmp_path / "table.md", "old\n")

    def fail(fh):
        fh.write(b"half of the new")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(target, fail)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_json_is_indented_utf8_with_a_final_newline_and_folders_are_created(tmp_path):
    path = atomic_write_json(tmp_path / "a" / "b" / "sidecar.json", {"label": "legs' position", "Δ": [1, 2]})
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and "Δ" in text and "\n  " in text
    assert json.loads(text) == {"label": "legs' position", "Δ": [1, 2]}


def test_an_os_error_names_the_path_it_was_writing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as info:
        atomic_write_text(tmp_path / "file" / "inside.txt", "y")
    assert info.value.filename == str(tmp_path / "file" / "inside.txt")


def test_a_group_of_files_is_written_all_or_nothing(tmp_path):
    first, second = tmp_path / "responses.csv", tmp_path / "report.md"
    atomic_write_files({first: b"old csv", second: b"old md"})
    with pytest.raises(TypeError):
        atomic_write_files({first: b"new csv", second: "not bytes"})
    assert first.read_bytes() == b"old csv" and second.read_bytes() == b"old md"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "responses.csv"]


def test_written_files_get_the_mode_of_a_plain_write_not_mkstemps_private_one(tmp_path):
    import os

    from two4two.io import atomic_write_bytes, atomic_write_files

    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    atomic_write_bytes(tmp_path / "a", b"x")
    atomic_write_files({tmp_path / "b": b"y"})
    expected = os.stat(plain).st_mode & 0o777
    assert os.stat(tmp_path / "a").st_mode & 0o777 == expected == os.stat(tmp_path / "b").st_mode & 0o777
