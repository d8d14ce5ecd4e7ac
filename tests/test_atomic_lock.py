"""Atomic writes and folder locks (cimha_tf/data/atomic.py, lock.py), with real processes
killed mid-write and real concurrent holders."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from cimha_tf.common import atomic
from cimha_tf.common import lock
from tests import helpers


def _script(code):
  return [sys.executable, "-c", textwrap.dedent(code)]


def test_write_json_replaces_whole_and_leaves_no_temporary(tmp_path):
  p = tmp_path / "state.json"
  atomic.write_json(p, {"epoch": 1})
  atomic.write_json(p, {"epoch": 2, "x": [1, 2]})
  assert json.loads(p.read_text()) == {"epoch": 2, "x": [1, 2]}
  assert os.listdir(tmp_path) == ["state.json"]


def test_error_inside_the_block_keeps_the_old_file(tmp_path):
  p = tmp_path / "a.txt"
  p.write_text("old")
  with pytest.raises(RuntimeError):
    with atomic.open_file(p) as f:
      f.write("new, half")
      raise RuntimeError("disk full")
  assert p.read_text() == "old"
  assert os.listdir(tmp_path) == ["a.txt"]


def test_temporary_name_keeps_the_ending_and_is_unique(tmp_path):
  a, b = (atomic.temporary_name(tmp_path / "best.keras") for _ in range(2))
  assert a != b and a.endswith("best.keras") and b.endswith("best.keras")
  assert os.path.dirname(a) == str(tmp_path)
  assert os.path.basename(a).startswith(f"{atomic.TMP_PREFIX}{os.getpid()}-")


def test_kill_during_a_write_leaves_the_old_file_and_a_removable_temporary(tmp_path):
  p = tmp_path / "big.bin"
  p.write_bytes(b"old")
  # Writes 200 MB in 1 MB pieces: killed once its temporary file exists, mid-write.
  killed = helpers.kill_when(_script(f"""
      from cimha_tf.common import atomic
      with atomic.open_file({str(p)!r}, "wb") as f:
        for _ in range(200):
          f.write(b"x" * 2**20)
      """), helpers.file_appears(str(tmp_path / (atomic.TMP_PREFIX + "*"))))
  assert p.read_bytes() == b"old"
  leftovers = [n for n in os.listdir(tmp_path) if n != "big.bin"]
  assert leftovers == [os.path.basename(killed.matched[0])]
  assert atomic.remove_temporaries(str(tmp_path)) == 1
  assert os.listdir(tmp_path) == ["big.bin"]


def test_remove_temporaries_keeps_those_of_live_processes(tmp_path):
  mine = atomic.temporary_name(tmp_path / "x.json")
  open(mine, "w").close()
  assert atomic.remove_temporaries(str(tmp_path)) == 0
  assert os.path.exists(mine)


def test_folder_is_swapped_in_whole_and_keeps_foreign_files(tmp_path):
  final = tmp_path / "prepared"
  final.mkdir()
  (final / "metadata.json").write_text("old")
  (final / "old-shard.tfrecord").write_text("old")
  (final / "notes.txt").write_text("mine")
  with atomic.folder(final, keep=lambda name: name == "notes.txt") as new:
    (open(os.path.join(new, "metadata.json"), "w")).write("new")
    assert (final / "metadata.json").read_text() == "old"  # not visible before the end
  assert sorted(os.listdir(final)) == ["metadata.json", "notes.txt"]
  assert (final / "metadata.json").read_text() == "new"
  assert (final / "notes.txt").read_text() == "mine"
  assert sorted(os.listdir(tmp_path)) == ["prepared"]  # the old folder and temporaries gone


def test_folder_failing_midway_leaves_the_old_one(tmp_path):
  final = tmp_path / "prepared"
  final.mkdir()
  (final / "metadata.json").write_text("old")
  with pytest.raises(ValueError):
    with atomic.folder(final) as new:
      open(os.path.join(new, "metadata.json"), "w").write("half")
      raise ValueError("bad video")
  assert os.listdir(final) == ["metadata.json"]
  assert (final / "metadata.json").read_text() == "old"
  assert sorted(os.listdir(tmp_path)) == ["prepared"]


def test_folder_refuses_to_replace_a_file(tmp_path):
  (tmp_path / "out").write_text("a user's file")
  with pytest.raises(NotADirectoryError, match="out"):
    with atomic.folder(tmp_path / "out"):
      pass
  assert os.listdir(tmp_path) == ["out"] and (tmp_path / "out").read_text() == "a user's file"


def test_swap_in_a_new_folder_where_none_was(tmp_path):
  new = tmp_path / "build"
  new.mkdir()
  (new / "f").write_text("1")
  assert atomic.swap_in(new, tmp_path / "final") is None
  assert os.listdir(tmp_path) == ["final"]


_HOLDER = """
    import sys, time
    from cimha_tf.common import lock
    lock.acquire(sys.argv[1], "test holder")
    print("holding", flush=True)
    time.sleep(600)
    """


def test_a_second_process_is_refused_with_the_holder_named(tmp_path):
  folder = tmp_path / "w"
  holder = subprocess.Popen(_script(_HOLDER) + [str(folder)], cwd=helpers.REPO,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "holding\n"
    with pytest.raises(lock.FolderInUse, match=rf"^{folder} is in use by process {holder.pid} "
                                               r"on .* since \d{4}-\d\d-\d\dT.*: wait for it"):
      lock.acquire(folder)
  finally:
    holder.kill()
    holder.wait()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, capsys):
  folder = tmp_path / "w"
  helpers.kill_when(_script(_HOLDER) + [str(folder)], helpers.line_printed("^holding"))
  assert os.path.exists(lock.lock_path(folder))  # SIGKILL: nothing cleaned up
  with lock.hold(folder):
    assert "taking over the lock of process" in capsys.readouterr().out
    with lock.hold(folder):  # re-entrant in one process
      pass
    assert json.load(open(lock.lock_path(folder)))["pid"] == os.getpid()
  assert not os.path.exists(lock.lock_path(folder))  # released: removed
  with lock.hold(folder):  # and free again, without a word
    assert "taking over" not in capsys.readouterr().out
