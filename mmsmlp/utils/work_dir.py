# Copyright (c) mmsmlp contributors. All rights reserved.
"""One training run per work directory, and one log folder per run."""
import atexit
import errno
import json
import os
import os.path as osp
import socket
import sys
import time
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

TRAIN_LOCK = '.train.lock'
START_LOCK = '.start.lock'
# the rank variables of the launchers of tools/train.py (torchrun, slurm,
# mpirun)
RANK_VARIABLES = {
    'pytorch': 'RANK',
    'slurm': 'SLURM_PROCID',
    'mpi': 'OMPI_COMM_WORLD_RANK'
}

_held = []  # the open lock files of this process (released at exit)


def _global_rank(launcher: str) -> int:
    variable = RANK_VARIABLES.get(launcher)
    return int(os.environ.get(variable, 0)) if variable else 0


def _process_start(pid: int):
    """The start time of process ``pid`` (clock ticks since boot, Linux), or
    None where unknown: with the pid it names one process."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ('Z', 'X'):  # ended, not yet reaped
        return 'ended'
    return int(fields[19])


def _is_running(holder: dict) -> bool:
    """Whether the run recorded in a lock file still runs (True when that
    cannot be told: another host)."""
    if holder.get('host') != socket.gethostname():
        return True
    pid = holder.get('pid')
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError):
        return pid is not None
    start = _process_start(pid)
    if start == 'ended':
        return False
    return holder.get('start') is None or start is None or \
        start == holder['start']


def _describe(holder: dict) -> str:
    started = holder.get('time')
    started = time.strftime('%Y-%m-%d %H:%M:%S',
                            time.localtime(started)) if started else '?'
    return (f'pid {holder.get("pid")} on host {holder.get("host")}, started '
            f'{started}: {holder.get("command", "?")}')


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_holder(file) -> None:
    file.seek(0)
    file.truncate()
    json.dump(
        dict(
            pid=os.getpid(),
            host=socket.gethostname(),
            start=_process_start(os.getpid()),
            time=time.time(),
            command=' '.join(sys.argv)), file)
    file.flush()


def _drop_held_in_child() -> None:
    """In a forked child (a data-loader worker), its copies of the lock
    files point at /dev/null instead: a flock belongs to the open file, so
    the run's workers would otherwise hold its lock after the run was
    killed, until they noticed and exited, and a ``--resume`` right after
    the kill was refused. Registered for every fork; nothing to do in a
    process that holds no lock."""
    if not _held:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for file in _held:
            os.dup2(null, file.fileno(), inheritable=False)
    finally:
        os.close(null)
    _held.clear()


os.register_at_fork(after_in_child=_drop_held_in_child)


def _release(file, path: str) -> None:
    try:
        file.seek(0)
        file.truncate()  # a lock file without holder: no run
        file.close()
    except (OSError, ValueError):
        pass


def lock_training(work_dir: str) -> None:
    """Make this process the only training run of ``work_dir`` until it
    exits, or raise ``RuntimeError`` naming the run that holds it.

    The lock is ``work_dir/.train.lock``, locked with ``flock`` (released
    by the system when the process ends, even killed) and holding the pid,
    host, start time and command line of the run, for the message. Where
    the file system has no ``flock``, the recorded pid decides: a lock whose
    process has ended (same host) is stale and taken over; one of another
    host is respected.
    """
    path = osp.join(work_dir, TRAIN_LOCK)
    file = open(path, 'a+')
    holder_message = ('{} is in use by another training run ({}). Wait for '
                      'it to end, stop it, or train with another --work-dir.')
    try:
        if fcntl is None:
            raise OSError(errno.ENOLCK, 'no fcntl')
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        raise RuntimeError(
            holder_message.format(work_dir, _describe(_read(path)))) from None
    except OSError:  # no flock here: the recorded pid decides
        holder = _read(path)
        if holder and _is_running(holder):
            file.close()
            raise RuntimeError(
                holder_message.format(work_dir, _describe(holder)) +
                (f' If that run has ended, delete {path}.'
                 if holder.get('host') != socket.gethostname() else ''))
    _write_holder(file)
    _held.append(file)
    atexit.register(_release, file, path)


@contextmanager
def claim_work_dir(work_dir: str, launcher: str = 'none',
                   train: bool = True):
    """Hold while building the Runner of ``tools/train.py`` (``train=True``)
    or ``tools/test.py`` (``train=False``).

    - A training run locks ``work_dir`` for as long as it runs
      (:func:`lock_training`): a second training run in the same work
      directory refuses to start, naming the first.
    - The Runner names its log folder ``work_dir/<YYYYmmdd_HHMMSS>`` after
      the second it is built in: runs (training or test) build their Runner
      one at a time (``work_dir/.start.lock``), each in a second whose
      folder does not exist yet, so two runs never share a log folder.

    Only the process of global rank 0 (of the ``launcher``) takes the
    locks.
    """
    if _global_rank(launcher) != 0:
        yield
        return
    os.makedirs(work_dir, exist_ok=True)
    if train:
        lock_training(work_dir)
    start = open(osp.join(work_dir, START_LOCK), 'a+')
    try:
        if fcntl is not None:
            try:
                fcntl.flock(start.fileno(), fcntl.LOCK_EX)
            except OSError:
                pass  # no flock: the folder check below still helps
        # the Runner's log folder will be named after this second or a
        # later one: wait for a second whose folder is free
        while osp.exists(
                osp.join(work_dir, time.strftime('%Y%m%d_%H%M%S'))):
            time.sleep(1.001 - time.time() % 1)
        yield
    finally:
        start.close()  # releases the flock
