"""One job per run folder: the lock names its holder, goes when the job goes, and is
taken over when its holder is gone (a dead process on this host, or no heartbeat)."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from torchgan_sagan.trainer.run_lock import (LOCK_FILE, RunFolderLocked, acquire_run_lock, claim_new_folder,
                                             read_run_lock)


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _foreign_lock(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": os.getpid(), "token": "someone else", "started": "earlier",
              **fields}
    (folder / LOCK_FILE).write_text(json.dumps(record))
    return folder / LOCK_FILE


def test_a_second_job_is_refused_with_the_holder_named(tmp_path):
    with acquire_run_lock(tmp_path / "run", say=print):
        holder = read_run_lock(tmp_path / "run")
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["alive"]
        with pytest.raises(RunFolderLocked, match=rf"in use by pid {os.getpid()} on {socket.gethostname()}"):
            acquire_run_lock(tmp_path / "run")
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released with the job


def test_the_lock_of_a_process_that_is_gone_is_taken_over_with_a_line(tmp_path):
    _foreign_lock(tmp_path, pid=_dead_pid())
    said = []
    with acquire_run_lock(tmp_path, say=said.append):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert len(said) == 1 and said[0].startswith(f"Taking over the lock of {tmp_path}: pid ")


def test_another_hosts_lock_counts_while_its_heartbeat_is_fresh(tmp_path):
    path = _foreign_lock(tmp_path, host="node-17", pid=12345)
    with pytest.raises(RunFolderLocked, match="pid 12345 on node-17"):
        acquire_run_lock(tmp_path)
    old = time.time() - 3600
    os.utime(path, (old, old))  # no heartbeat for an hour
    said = []
    acquire_run_lock(tmp_path, say=said.append).release()
    assert "is gone (last heartbeat 3600 s ago)" in said[0]


def test_the_holder_keeps_its_heartbeat_and_release_leaves_another_jobs_lock(tmp_path):
    lock = acquire_run_lock(tmp_path, heartbeat=0.05)
    old = time.time() - 100
    os.utime(tmp_path / LOCK_FILE, (old, old))
    time.sleep(0.3)
    assert read_run_lock(tmp_path)["age"] < 5
    lock.release()
    path = _foreign_lock(tmp_path)
    lock.release()  # a second release, after another job took the folder: its lock stays
    assert path.exists()


def test_the_lock_file_is_readable_by_the_team(tmp_path):
    umask = os.umask(0o022)
    try:
        with acquire_run_lock(tmp_path):
            assert (tmp_path / LOCK_FILE).stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)


def test_new_folders_are_claimed_once_each(tmp_path):
    names = [tmp_path / "runs" / "a", tmp_path / "runs" / "a-2", tmp_path / "runs" / "a-3"]
    first, second = claim_new_folder(names), claim_new_folder(names)
    assert (first, second) == (names[0], names[1]) and first.is_dir() and second.is_dir()
