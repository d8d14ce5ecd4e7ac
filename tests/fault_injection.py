"""Fault injection for tests: run a real subprocess and kill -9 it at a chosen moment.

    result = kill_when(cmd, file_appears(str(w / "backup" / ".tmp-*")))

The moment is a condition polled every millisecond or so: a file (glob) appearing, a file
changing (size or mtime), or a printed line (stdout and stderr, merged) matching a regular
expression. SIGKILL gives the process no chance to clean up, as a power cut or the OOM
killer would not. If the process ends before the condition holds, AssertionError with its
output: the test did not test what it meant to.
"""

import glob
import os
import re
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Killed:
  """What kill_when saw: `output` (the lines printed before the signal), `matched` (the
  files or line that triggered it) and `process` (the Popen; still alive when stopped)."""

  def __init__(self, output, matched, process):
    self.output, self.matched, self.process = output, matched, process


def file_appears(pattern):
  """Holds once a file or folder matching the glob `pattern` exists."""
  def check(_lines):
    return glob.glob(pattern) or None
  check.what = f"a file matching {pattern}"
  return check


def file_changes(path):
  """Holds once `path` differs (size, mtime or existence) from when the process started."""
  def stat():
    try:
      s = os.stat(path)
      return (s.st_size, s.st_mtime_ns)
    except FileNotFoundError:
      return None
  start = stat()

  def check(_lines):
    return [path] if stat() != start else None
  check.what = f"{path} changing"
  return check


def line_printed(regex):
  """Holds once a printed line (stdout or stderr) matches `regex` (re.search)."""
  pattern = re.compile(regex)

  def check(lines):
    return next((l for l in list(lines) if pattern.search(l)), None)
  check.what = f"a line matching {regex!r}"
  return check


def python_module(module, *args):
  return [sys.executable, "-m", module, *map(str, args)]


def kill_when(cmd, condition, timeout=600, cwd=REPO, env=None, poll_s=0.001,
              sig=signal.SIGKILL):
  """Starts `cmd`, SIGKILLs it as soon as `condition` holds, waits for it; returns Killed.
  sig=signal.SIGSTOP freezes it there instead (e.g. holding a lock) and returns at once:
  the caller kills or continues (SIGCONT) Killed.process."""
  proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace")
  lines = []
  reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                            daemon=True)
  reader.start()
  deadline = time.monotonic() + timeout
  matched = None
  try:
    while proc.poll() is None and time.monotonic() < deadline:
      matched = condition(lines)
      if matched:
        os.kill(proc.pid, sig)
        break
      time.sleep(poll_s)
  finally:
    if proc.poll() is None and not matched:
      proc.kill()
    if not matched or sig != signal.SIGSTOP:
      proc.wait(timeout=60)
      reader.join(timeout=10)
  output = "".join(lines)
  if not matched:
    why = "timed out" if proc.returncode == -signal.SIGKILL else f"ended (status {proc.returncode})"
    raise AssertionError(f"{' '.join(map(str, cmd))} {why} before {condition.what}:\n"
                         f"{output[-4000:]}")
  return Killed(output, matched, proc)


def run(cmd, timeout=600, cwd=REPO, env=None):
  """Runs `cmd` to its end: (status, stdout and stderr merged)."""
  r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True, errors="replace", timeout=timeout)
  return r.returncode, r.stdout
