"""An exclusive lock on a folder for the process that writes it (trainer, prepare_data,
export), so that two runs on one workdir or prepared folder cannot mix their files.

The lock is a file beside the folder, PARENT/.NAME.lock (beside, not inside: prepare_data
swaps the whole folder in when complete), holding the owner's pid, host, start time and
command line, and an fcntl.flock held for as long as the process holds the lock. The kernel
drops the flock when its process dies however it dies (kill -9 included), so a lock file
left by a dead process is stale by construction: the next run takes it over and says so.
A second live writer gets FolderInUse: "FOLDER is in use by process N on HOST since T".
flock is per host on network file systems that do not forward it (some NFS setups).
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys

_HELD = {}  # realpath of the lock file -> [fd, depth]: re-entrant within one process


class FolderInUse(FileExistsError):
  """Another live process holds the folder's lock (a FileExistsError: its lock file exists,
  so the binaries report it as one FATAL line)."""


def lock_path(folder):
  folder = os.path.abspath(os.fspath(folder)).rstrip(os.sep)
  parent, name = os.path.split(folder)
  return os.path.join(parent, f".{name}.lock")


def _owner(fd):
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    return json.loads(os.read(fd, 65536).decode("utf-8") or "null")
  except (OSError, ValueError):
    return None


def _describe(owner):
  if not isinstance(owner, dict):
    return "another process (its lock file is unreadable)"
  return (f"process {owner.get('pid')} on {owner.get('host')} since {owner.get('since')} "
          f"({owner.get('command', '?')})")


def acquire(folder, what="writing"):
  """Takes FOLDER's lock or raises FolderInUse naming its holder; prints a line when it
  takes over the lock of a process that died. Returns the lock file's path."""
  path = lock_path(folder)
  key = os.path.realpath(path)
  if key in _HELD:
    _HELD[key][1] += 1
    return path
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
  except FileExistsError:  # a file on the way: name the folder asked for, as open() would
    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(folder)) from None
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      owner = _owner(fd)
      os.close(fd)
      raise FolderInUse(f"{folder} is in use by {_describe(owner)}: wait for it to finish, or "
                        f"use another folder (lock file {path})") from None
    # A holder that released (and unlinked) the file while we waited on the old inode:
    # that inode is no longer the lock; open the path again.
    try:
      same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same = False
    if same:
      break
    os.close(fd)
  stale = _owner(fd)
  if isinstance(stale, dict) and stale.get("pid") != os.getpid():
    print(f"{folder}: taking over the lock of {_describe(stale)}, which ended without "
          "releasing it (killed?)")
  info = {"pid": os.getpid(), "host": socket.gethostname(),
          "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
          "command": " ".join(sys.argv)[:500], "what": what}
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  os.write(fd, json.dumps(info).encode("utf-8"))
  os.fsync(fd)
  _HELD[key] = [fd, 1]
  return path


def release(folder):
  """Releases FOLDER's lock (the file is removed while still locked, so a waiting process
  that opened it retries on the path)."""
  path = lock_path(folder)
  key = os.path.realpath(path)
  held = _HELD.get(key)
  if held is None:
    return
  held[1] -= 1
  if held[1]:
    return
  del _HELD[key]
  with contextlib.suppress(OSError):
    os.remove(path)
  os.close(held[0])


@contextlib.contextmanager
def hold(folder, what="writing"):
  """with hold(FOLDER): ... : the lock for the block's duration (see acquire)."""
  acquire(folder, what)
  try:
    yield
  finally:
    release(folder)
