"""`policies.atomic`: a file is replaced in one rename, by a temporary of its own writer, keeping the
file's permissions and writing through a symbolic link; a folder lock makes two processes'
read-modify-writes take turns."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

from policies.atomic import folder_lock, write_json_atomic, write_text_atomic


def test_a_file_named_like_an_old_temporary_is_never_touched(tmp_path: Path) -> None:
    mine = tmp_path / "me.tmp.json"  # the temporary's old, fixed name
    mine.write_text("my own file")
    write_json_atomic(tmp_path / "me.json", {"a": 1})
    assert mine.read_text() == "my own file"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["me.json", "me.tmp.json"]


def test_the_file_keeps_its_permissions_and_a_link_is_written_through(tmp_path: Path) -> None:
    target = tmp_path / "memory.json"
    target.write_text("{}")
    target.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_text_atomic(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def _write_many(path: Path, writer: int) -> None:
    for count in range(200):
        write_json_atomic(path, {"writer": writer, "count": count})


def test_two_processes_writing_one_file_leave_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    processes = [multiprocessing.Process(target=_write_many, args=(path, w)) for w in (0, 1)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    assert [process.exitcode for process in processes] == [0, 0]  # no writer lost its temporary
    assert json.loads(path.read_text())["count"] == 199
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]  # no temporary left


def _count_up(path: Path) -> None:
    for _ in range(100):
        with folder_lock(path.parent):
            count = json.loads(path.read_text())["count"]
            write_json_atomic(path, {"count": count + 1})


def test_read_modify_writes_under_the_folder_lock_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "counter.json"
    write_json_atomic(path, {"count": 0})
    processes = [multiprocessing.Process(target=_count_up, args=(path,)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    assert [process.exitcode for process in processes] == [0, 0]
    assert json.loads(path.read_text())["count"] == 200
    assert [p.name for p in tmp_path.iterdir()] == ["counter.json"]  # the lock leaves no file
