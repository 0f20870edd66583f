from setuptools import find_packages, setup


def read_requirements(path):
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith('#')]


version = {}
with open('mmsmlp/version.py') as f:
    exec(f.read(), version)

setup(
    name='mmsmlp',
    version=version['__version__'],
    description='sMLPNet (Sparse MLP) for OpenMMLab: classification, '
    'detection and segmentation',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
    python_requires='>=3.8',
    # mmcv (2.0.0rc4 <= mmcv < 2.2, built with its ops by tools/install.sh) is
    # checked at import time, as the OpenMMLab codebases do, not listed here:
    # pip would try to build it from source with build isolation, which
    # fails. mmdet and mmseg are optional (`pip install mmsmlp[det_seg]`).
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'det_seg': read_requirements('requirements/optional.txt'),
        'tests': read_requirements('requirements/tests.txt'),
    },
    license='Apache License 2.0',
    zip_safe=False)
