import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup


def read_requirements(path):
    with open(path) as f:
        return [
            ln.strip() for ln in f
            if ln.strip() and not ln.startswith('#')
        ]


def add_mim_extension():
    """Put the files OpenMMLab's ``mim`` and mmpretrain's model hub look for
    into ``mmsmlp/.mim``: ``tools`` (``mim train/test mmsmlp`` run
    ``.mim/tools/train.py`` / ``test.py``), ``configs`` and
    ``model-index.yml`` (``mim search mmsmlp``, ``mmpretrain.list_models``).

    As mmpretrain's setup.py does: symbolic links for an editable install
    (``pip install -e .``: setuptools' ``develop`` or PEP 660
    ``editable_wheel``), copies for a wheel or a source distribution. Other
    setup.py commands (metadata, egg_info) leave the folder as it is.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:
        mode = 'copy'
    else:
        return

    filenames = ['tools', 'configs', 'model-index.yml']
    repo_path = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(repo_path, 'mmsmlp', '.mim')
    os.makedirs(mim_path, exist_ok=True)

    for filename in filenames:
        src_path = osp.join(repo_path, filename)
        tar_path = osp.join(mim_path, filename)
        if not osp.exists(src_path):
            raise FileNotFoundError(
                f'{src_path} is missing: the mim extension needs it')
        if osp.isfile(tar_path) or osp.islink(tar_path):
            os.remove(tar_path)
        elif osp.isdir(tar_path):
            shutil.rmtree(tar_path)

        if mode == 'symlink':
            src_relpath = osp.relpath(src_path, osp.dirname(tar_path))
            try:
                os.symlink(src_relpath, tar_path)
                continue
            except OSError:
                # e.g. Windows without the privilege: copy instead
                warnings.warn(f'Failed to link {src_relpath}; copying it to '
                              f'{tar_path}')
        if osp.isfile(src_path):
            shutil.copyfile(src_path, tar_path)
        else:
            shutil.copytree(
                src_path, tar_path,
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


version = {}
with open('mmsmlp/version.py') as f:
    exec(f.read(), version)

if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmsmlp',
        version=version['__version__'],
        description='sMLPNet (Sparse MLP) for OpenMMLab: classification, '
        'detection and segmentation',
        long_description=open('README.md').read(),
        long_description_content_type='text/markdown',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
        # mmsmlp/.mim (MANIFEST.in) goes into wheels and source archives.
        include_package_data=True,
        python_requires='>=3.8',
        # mmcv (2.0.0rc4 <= mmcv < 2.2, built with its ops by
        # tools/install.sh) is checked at import time, as the OpenMMLab
        # codebases do, not listed here: pip would try to build it from source
        # with build isolation, which fails. mmdet and mmseg are optional
        # (`pip install mmsmlp[det_seg]`).
        install_requires=read_requirements('requirements/runtime.txt'),
        extras_require={
            'det_seg': read_requirements('requirements/optional.txt'),
            'tests': read_requirements('requirements/tests.txt'),
        },
        license='Apache License 2.0',
        zip_safe=False)
