# Copyright (c) mmsmlp contributors. All rights reserved.
"""tools/analysis_tools/backbone_flops.py counts what the papers count, and
shows how sMLPNet's token mixing grows with the input size."""
import pytest

from .conftest import import_tool


def load_tool():
    return import_tool('analysis_tools/backbone_flops.py')


def test_counts_the_papers_flops_and_the_growth_with_size(capsys):
    tool = load_tool()
    table = tool.main(['--models', 'smlpnet-t', 'swin-t', '--shapes',
                       '224x224', '448x448'])
    # the papers' figures at 224x224: sMLPNet-T 5.0G, Swin-T 4.5G
    assert table['smlpnet-t', (224, 224)] == pytest.approx(5.0, rel=0.01)
    assert table['swin-t', (224, 224)] == pytest.approx(4.5, rel=0.01)
    # 4x the tokens: Swin-T's windows cost 4x, sMLPNet's axial mixes more
    # (each costs H or W multiply-adds per element)
    growth = {name: table[name, (448, 448)] / table[name, (224, 224)]
              for name in ('smlpnet-t', 'swin-t')}
    assert growth['swin-t'] == pytest.approx(4.0, rel=0.02)
    assert growth['smlpnet-t'] > growth['swin-t'] * 1.02
    # the printed table: values, and each peer's ratio to the first model
    out = capsys.readouterr().out
    t, s = table['smlpnet-t', (224, 224)], table['swin-t', (224, 224)]
    assert f'| smlpnet-t | {t:.2f} |' in out
    assert f'| swin-t | {s:.2f} (smlpnet-t {t / s:.2f}x) |' in out


def test_a_bad_shape_names_the_option(capsys):
    tool = load_tool()
    with pytest.raises(SystemExit):
        tool.main(['--shapes', '800by1344'])
    assert "--shapes takes HxW, e.g. 800x1344, got '800by1344'" in (
        capsys.readouterr().err)
