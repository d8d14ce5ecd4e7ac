"""Atomic writes: a file or folder appears under its name complete, or not at all.

Everything the project writes (checkpoints, JSON state, shards, metadata, exports) is
written to a temporary name in the same folder, flushed and fsynced, and renamed into
place (os.replace is atomic within one file system), so a kill -9 or a full disk leaves
either the old file or the new one, never a half-written one that a reader, a resumed run
or TF Serving would take for complete. Temporary names start with TMP_PREFIX and carry
the writer's pid, so two processes never share one, and `remove_temporaries` can clear a
killed writer's leftovers.

A folder is built beside its final place and swapped in when complete (`folder`):
atomically with Linux's renameat2(RENAME_EXCHANGE) where available, else by two renames
(a moment where the name is missing, never one where it is half-written).
"""

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import secrets
import shutil

TMP_PREFIX = ".tmp-"


def temporary_name(path):
  """A unique name beside `path` that keeps its ending (Keras wants '.keras', h5py
  '.weights.h5'): FOLDER/.tmp-PID-RANDOM-NAME."""
  folder, name = os.path.split(os.path.abspath(os.fspath(path)))
  return os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")


def _fsync_path(path):
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def fsync_folder(folder):
  """Makes a rename inside `folder` durable (its entry, not only the file's bytes)."""
  try:
    _fsync_path(folder)
  except OSError:  # some file systems (and Windows) cannot fsync a folder
    pass


def _fsync_tree(root):
  for dirpath, _, files in os.walk(root):
    for f in files:
      _fsync_path(os.path.join(dirpath, f))
    fsync_folder(dirpath)


@contextlib.contextmanager
def path(final):
  """Yields a temporary path beside `final` for a writer that takes a path (model.save,
  np.save, a TFRecordWriter); when the block ends without an error the file is fsynced and
  renamed to `final`. On an error the temporary file is removed and `final` is untouched."""
  final = os.fspath(final)
  tmp = temporary_name(final)
  try:
    yield tmp
    _fsync_path(tmp)
    os.replace(tmp, final)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  fsync_folder(os.path.dirname(os.path.abspath(final)))


@contextlib.contextmanager
def open_file(final, mode="w", encoding=None):
  """`open` whose file appears under `final` only once the block has ended without error."""
  if "b" not in mode and encoding is None:
    encoding = "utf-8"
  with path(final) as tmp:
    with open(tmp, mode, encoding=encoding) as f:
      yield f
      f.flush()


def write_bytes(final, data):
  with open_file(final, "wb") as f:
    f.write(data)


def write_json(final, obj, **dump_kwargs):
  """json.dump(obj) to `final`, atomically (default: indent=1, sorted keys)."""
  dump_kwargs.setdefault("indent", 1)
  dump_kwargs.setdefault("sort_keys", True)
  with open_file(final, "w") as f:
    json.dump(obj, f, **dump_kwargs)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a, b):
  """Swaps two existing paths atomically (Linux renameat2); False where unsupported."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = libc.renameat2
  except (OSError, AttributeError, TypeError):
    return False
  renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
  if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
    return True
  return False  # EINVAL / ENOSYS: a file system or kernel without it; fall back


def swap_in(new, final):
  """Puts the complete folder `new` at `final`; an existing `final` is swapped out and
  deleted. Returns the old folder's path while it is being deleted (for callers that keep
  something of it, see `folder(keep=...)`)."""
  new, final = os.path.abspath(new), os.path.abspath(final)
  if not os.path.lexists(final):
    os.rename(new, final)
  elif _exchange(new, final):
    pass  # `new` now holds the old folder
  else:
    old = temporary_name(final)
    os.rename(final, old)
    os.rename(new, final)
    new = old
  fsync_folder(os.path.dirname(final))
  return new if os.path.lexists(new) else None


@contextlib.contextmanager
def folder(final, keep=None):
  """Yields an empty temporary folder beside `final` to build in; when the block ends
  without an error its files are fsynced and it replaces `final` whole. On an error it is
  deleted and `final` is untouched.
  keep(name) -> bool: entries of an existing `final` that the new folder lacks and that
  `keep` accepts are moved into it before the swap (files the builder does not own)."""
  final = os.path.abspath(os.fspath(final))
  if os.path.lexists(final) and not os.path.isdir(final):  # never swap a file away
    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), final)
  os.makedirs(os.path.dirname(final), exist_ok=True)
  tmp = temporary_name(final)
  os.makedirs(tmp)
  try:
    yield tmp
    if keep is not None and os.path.isdir(final):
      for name in sorted(os.listdir(final)):
        if keep(name) and not os.path.lexists(os.path.join(tmp, name)):
          os.rename(os.path.join(final, name), os.path.join(tmp, name))
    _fsync_tree(tmp)
    old = swap_in(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if old:
    shutil.rmtree(old, ignore_errors=True)


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def remove_temporaries(folder, name=None):
  """Deletes the temporary files and folders that killed writers left in `folder` (those
  of processes still running are kept; with `name`, only those for FOLDER/name). Returns
  their count."""
  if not os.path.isdir(folder):
    return 0
  count = 0
  for entry in os.listdir(folder):
    pid = entry[len(TMP_PREFIX):].split("-", 1)[0]
    if (entry.startswith(TMP_PREFIX) and pid.isdigit() and not _alive(int(pid))
        and (name is None or entry.split("-", 3)[-1] == name)):
      p = os.path.join(folder, entry)
      if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
      else:
        with contextlib.suppress(OSError):
          os.remove(p)
      count += 1
  return count
