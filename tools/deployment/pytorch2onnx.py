# Copyright (c) mmsmlp contributors. All rights reserved.
"""Export an sMLPNet model with a dynamic input height and width, and check
the export against PyTorch.

    # ImageNet classifier -> ONNX (TorchScript-based exporter), checked with
    # onnxruntime at three sizes
    python tools/deployment/pytorch2onnx.py \\
        configs/smlpnet/smlpnet-s_8xb128_in1k.py \\
        checkpoints/smlpnet-s_3rdparty_in1k.pth \\
        --output-file smlpnet-s.onnx --verify-sizes 200x300 256x320 416x352

    # the backbone of a detection/segmentation config (its four feature
    # maps), with the dynamo-based exporter
    python tools/deployment/pytorch2onnx.py \\
        configs/upernet/smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py \\
        --part backbone --exporter dynamo --output-file smlpnet-t_backbone.onnx

    # torch.export only: an ExportedProgram (.pt2)
    python tools/deployment/pytorch2onnx.py CONFIG CKPT \\
        --exporter torch-export --output-file smlpnet.pt2

``--part model`` (default, classifiers only) exports ``model(x,
mode='tensor')``: the logits before softmax. ``--part backbone`` exports the
backbone of any of the project's configs: the inputs of mmdet's and mmseg's
necks and heads, whose own export is mmdeploy's business. The sparse-MLP
weights are resampled inside the exported graph to the size it runs at
(docs/deployment.md), so one file serves every input size.
"""
import argparse
import os.path as osp
import sys
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

EXPORTERS = ('torchscript', 'dynamo', 'torch-export')
PARTS = ('model', 'backbone')
# The input sizes the exported graph is made for (torch.export's dynamic
# dimensions need a range; from 64 on, every stage has 2 or more positions
# per axis: torch.export specialises a size of 1).
MIN_SIZE = 64
MAX_SIZE = 4096


class TensorOutputs(nn.Module):
    """The exported function: a classifier's logits, or a backbone's
    feature maps, for a ``(B, 3, H, W)`` normalised image batch."""

    def __init__(self, model: nn.Module, part: str):
        super().__init__()
        self.model, self.part = model, part

    def forward(self, x):
        if self.part == 'backbone':
            return tuple(self.model.backbone(x))
        return self.model(x, mode='tensor')


def build_model(config: str, checkpoint: str = None, part: str = 'model',
                cfg_options: dict = None) -> Tuple[nn.Module, object]:
    """The config's model in eval mode (with the checkpoint's weights), and
    the config."""
    import mmsmlp  # noqa: F401  registers SMLPNet
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmpretrain')
    init_default_scope(scope)
    if part == 'model' and cfg.model.type != 'ImageClassifier':
        raise ValueError(
            f'--part model exports classifiers only; {config} builds a '
            f'{cfg.model.type} ({scope}): use --part backbone (the heads of '
            'mmdet and mmseg are exported by mmdeploy)')
    model_cfg = cfg.model.copy()
    if checkpoint is not None:
        # the checkpoint's weights replace the ImageNet ones anyway
        model_cfg.get('backbone', {}).pop('init_cfg', None)
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    return model, cfg


def parse_size(text: str) -> Tuple[int, int]:
    """``'HxW'`` or ``'S'`` -> ``(H, W)``."""
    try:
        parts = [int(p) for p in text.lower().split('x')]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < MIN_SIZE or max(parts) > MAX_SIZE:
        raise argparse.ArgumentTypeError(
            f'a size is HxW or S with sides in [{MIN_SIZE}, {MAX_SIZE}], '
            f'got {text!r}')
    return tuple(parts)


def output_names(num_outputs: int) -> List[str]:
    return ['output'] if num_outputs == 1 else [
        f'output{i}' for i in range(num_outputs)
    ]


def export(module: nn.Module, example: torch.Tensor, output_file: str,
           exporter: str = 'torchscript', opset: int = 17,
           program=None) -> None:
    """Export ``module`` with a dynamic batch size, height and width.

    ``torchscript`` and ``dynamo`` write ONNX (``torch.onnx.export`` with
    ``dynamo=False`` / ``True``, the latter converting the program of
    :func:`export_program`, or ``program`` if given); ``torch-export`` saves
    that program (``.pt2``)."""
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got '
                         f'{exporter!r}')
    if exporter == 'torchscript':
        with torch.no_grad():
            outputs = _as_tuple(module(example))
        names = output_names(len(outputs))
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for name, out in zip(names, outputs):
            # logits (B, classes); feature maps (B, C, H', W')
            axes[name] = {0: 'batch'} if out.dim() == 2 else {
                0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
        torch.onnx.export(
            module, (example, ),
            output_file,
            input_names=['input'],
            output_names=names,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False)
        return
    if program is None:
        program = export_program(module, example)
    if exporter == 'dynamo':
        # the dynamo-based exporter converts the torch.export program
        names = output_names(len(program.graph_signature.user_outputs))
        onnx_program = torch.onnx.export(
            program,
            input_names=['input'],
            output_names=names,
            opset_version=max(opset, 18),  # the dynamo exporter's minimum
            dynamo=True)
        onnx_program.save(output_file)
    else:
        torch.export.save(program, output_file)


def export_program(module: nn.Module, example: torch.Tensor):
    """``torch.export.export`` of ``module`` with a dynamic batch size,
    height and width (the example's batch must not be 1: torch.export
    specialises a size of 1)."""
    dims = {
        0: torch.export.Dim('batch', min=1, max=1024),
        2: torch.export.Dim('height', min=MIN_SIZE, max=MAX_SIZE),
        3: torch.export.Dim('width', min=MIN_SIZE, max=MAX_SIZE),
    }
    return torch.export.export(
        module, (example, ), dynamic_shapes=(dims, ), strict=False)


def _as_tuple(outputs) -> tuple:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (
        outputs, )


def load_exported(output_file: str, exporter: str):
    """A callable ``f(np.ndarray) -> list[np.ndarray]`` running the export
    (onnxruntime on the CPU for ONNX)."""
    if exporter == 'torch-export':
        program = torch.export.load(output_file).module()

        def run(x):
            with torch.no_grad():
                return [
                    t.numpy() for t in _as_tuple(program(torch.from_numpy(x)))
                ]

        return run
    import onnxruntime as ort
    session = ort.InferenceSession(
        output_file, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def verify(module: nn.Module, output_file: str, exporter: str,
           sizes: Sequence[Tuple[int, int]], batch: int = 1, rtol=1e-3,
           atol=1e-4, seed: int = 0) -> List[dict]:
    """Run the export and PyTorch on the same random inputs of each size;
    raise ``AssertionError`` naming the size and output where they differ
    by more than ``atol + rtol * |pytorch|``. Returns one record per size
    and output: its shape and the largest absolute difference."""
    run = load_exported(output_file, exporter)
    generator = torch.Generator().manual_seed(seed)
    records = []
    for h, w in sizes:
        x = torch.randn(batch, 3, h, w, generator=generator)
        with torch.no_grad():
            expected = [t.numpy() for t in _as_tuple(module(x))]
        got = run(x.numpy())
        if len(got) != len(expected):
            raise AssertionError(f'{h}x{w}: the export gives {len(got)} '
                                 f'outputs, PyTorch {len(expected)}')
        for i, (g, e) in enumerate(zip(got, expected)):
            if g.shape != e.shape:
                raise AssertionError(
                    f'{h}x{w}, output {i}: shape {g.shape} from the export, '
                    f'{e.shape} from PyTorch')
            diff = float(np.abs(g - e).max())
            records.append(dict(size=(h, w), output=i, shape=e.shape,
                                max_abs_diff=diff))
            if not np.allclose(g, e, rtol=rtol, atol=atol):
                raise AssertionError(
                    f'{h}x{w}, output {i} {e.shape}: the export differs from '
                    f'PyTorch by up to {diff:.3g} (atol {atol}, rtol {rtol})')
    return records


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export an sMLPNet model (ONNX or torch.export) with '
        'dynamic height and width, and check it against PyTorch')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', nargs='?', help='checkpoint (default: random weights)')
    parser.add_argument(
        '--output-file', required=True, help='the .onnx (or .pt2) to write')
    parser.add_argument(
        '--part', choices=PARTS, default='model',
        help='model: a classifier\'s logits; backbone: the backbone\'s '
        'feature maps (any config)')
    parser.add_argument(
        '--exporter', choices=EXPORTERS, default='torchscript',
        help='torchscript: torch.onnx.export(dynamo=False); dynamo: '
        'torch.onnx.export(dynamo=True); torch-export: torch.export.save')
    parser.add_argument(
        '--shape', type=parse_size, default=(224, 224),
        help='HxW of the example input the export traces (the graph takes '
        'any size)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset')
    parser.add_argument(
        '--verify-sizes', type=parse_size, nargs='*',
        default=[(224, 224), (200, 300), (256, 320)],
        help='HxW sizes to compare the export with PyTorch at (none: skip)')
    parser.add_argument(
        '--cfg-options', nargs='+', default=None,
        help='override config settings, key=value (as tools/train.py)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import DictAction
    options = None
    if args.cfg_options:
        ns = argparse.Namespace()
        DictAction(option_strings=[], dest='o')(None, ns, args.cfg_options)
        options = ns.o
    model, _ = build_model(args.config, args.checkpoint, args.part, options)
    module = TensorOutputs(model, args.part).eval()
    # batch 2: torch.export would specialise a batch of 1
    example = torch.randn(2, 3, *args.shape)
    out_dir = osp.dirname(osp.abspath(args.output_file))
    if not osp.isdir(out_dir):
        raise FileNotFoundError(f'output folder {out_dir} does not exist')
    export(module, example, args.output_file, args.exporter, args.opset)
    print(f'Exported {args.output_file} ({args.exporter}, dynamic batch, '
          'height and width)')
    if args.verify_sizes:
        records = verify(module, args.output_file, args.exporter,
                         args.verify_sizes)
        for r in records:
            h, w = r['size']
            print(f'  {h}x{w} output {r["output"]} {tuple(r["shape"])}: max '
                  f'|export - PyTorch| = {r["max_abs_diff"]:.2e}')
        print('The export matches PyTorch at ' + ', '.join(
            f'{h}x{w}' for h, w in args.verify_sizes))


if __name__ == '__main__':
    sys.exit(main())
