# Copyright (c) mmsmlp contributors. All rights reserved.
"""Checks of a config that fail early, with the name of what is wrong."""
import difflib
import inspect
import os.path as osp
from typing import Iterator, List, Optional, Sequence, Tuple

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _is_local(path) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def _datasets(dataset, where: str) -> Iterator[Tuple[dict, str]]:
    """A dataset config and those it wraps (``dataset`` of RepeatDataset,
    ClassBalancedDataset, ...; ``datasets`` of ConcatDataset)."""
    if not isinstance(dataset, dict):
        return
    yield dataset, where
    yield from _datasets(dataset.get('dataset'), f'{where}.dataset')
    for i, inner in enumerate(dataset.get('datasets') or []):
        yield from _datasets(inner, f'{where}.datasets[{i}]')


def _missing_paths(dataset: dict) -> Iterator[Tuple[str, str]]:
    """``(key, path)`` of each local path of one dataset config that does
    not exist: ``data_root``, then ``ann_file`` and the ``data_prefix``
    values (relative ones under ``data_root``, as mmengine joins them)."""
    backend = (dataset.get('backend_args') or {}).get('backend', 'local')
    if backend != 'local':
        return
    data_root = dataset.get('data_root')
    if _is_local(data_root) and not osp.isdir(data_root):
        yield 'data_root', data_root
        return  # everything below it is missing too

    def under_root(path):
        return osp.join(data_root, path) if _is_local(data_root) else path

    ann_file = dataset.get('ann_file')
    if _is_local(ann_file) and not osp.isfile(under_root(ann_file)):
        yield 'ann_file', under_root(ann_file)
    prefix = dataset.get('data_prefix')
    prefixes = prefix.items() if isinstance(prefix, dict) else [
        ('img_path', prefix)
    ]
    for name, path in prefixes:
        if _is_local(path) and not osp.exists(under_root(path)):
            yield f'data_prefix.{name}', under_root(path)


def check_data_paths(cfg, dataloaders: Sequence[str] = DATALOADERS) -> None:
    """Raise ``FileNotFoundError`` naming every data path of the config's
    datasets that does not exist, e.g. ``train_dataloader: data_root
    data/imagenet does not exist``.

    Run by ``tools/train.py`` and ``tools/test.py`` before the Runner is
    built, so a wrong ``data_root``, ``ann_file`` or ``data_prefix`` is
    reported at once, not after the model is built or from a data-loader
    worker. Paths of remote backends (``s3://...``, ``backend_args``) are not
    checked.

    Args:
        cfg (Config | dict): The config.
        dataloaders (Sequence[str]): The dataloaders to check (absent or
            ``None`` ones are skipped). Defaults to train, val and test.
    """
    errors = []
    for name in dataloaders:
        loader = cfg.get(name)
        if not isinstance(loader, dict):
            continue
        for dataset, where in _datasets(loader.get('dataset'), name):
            where = name if where == f'{name}.dataset' else where
            errors += [
                f'{where}: {key} {path} does not exist'
                for key, path in _missing_paths(dataset)
            ]
    if errors:
        raise FileNotFoundError('\n'.join(errors))


# Top-level config keys that mmengine's Runner (``Runner.from_cfg``) and the
# OpenMMLab tools read, besides the Runner's ``__init__`` arguments.
TOOL_KEYS = ('runner_type', 'custom_imports', 'default_scope', 'tta_model',
             'tta_pipeline', 'compile', 'launcher', 'work_dir', 'load_from',
             'resume', 'experiment_name', 'visualizer', 'vis_backends')
# Variables of OpenMMLab's base configs that are close to a key above (e.g.
# `train_pipeline` ~ `tta_pipeline`): not typos.
CONFIG_VARIABLES = ('train_pipeline', 'val_pipeline', 'test_pipeline',
                    'img_norm_cfg', 'norm_cfg', 'model_cfg', 'data_cfg')
# An unknown top-level key this close to a key the Runner reads is taken for
# a typo (difflib's ratio: `trian_cfg` ~ `train_cfg` 0.89; config variables
# such as `data_root` are far from every one of them).
TYPO_CUTOFF = 0.8


def named_submodule(model, name: str, owner: str):
    """``model.get_submodule(name)`` (a name a config gives ``owner``); a
    KeyError naming ``owner``, the name and the model's children if there
    is none."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        children = [n for n, _ in model.named_children()]
        raise KeyError(f'{owner}: the model has no submodule {name!r} (its '
                       f'children: {children})') from None


def _runner_keys() -> List[str]:
    from mmengine.runner import Runner
    params = inspect.signature(Runner.__init__).parameters
    return sorted(set(params) - {'self'} | set(TOOL_KEYS))


def _did_you_mean(key: str, choices: Sequence[str],
                  cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=cutoff)
    return f' (did you mean {close[0]!r}?)' if close else ''


def check_top_level_keys(cfg) -> None:
    """Raise ``KeyError`` for a top-level key that is not one the Runner or
    the tools read but is close to one (``trian_cfg`` for ``train_cfg``):
    the Runner would ignore it and train with its defaults. Other unknown
    keys are the config's own variables (``data_root``, ``crop_size``,
    ...)."""
    known = _runner_keys()
    typos = []
    for key in cfg.keys():
        if key in known or key in CONFIG_VARIABLES or key.startswith('_'):
            continue
        close = difflib.get_close_matches(key, known, n=1,
                                          cutoff=TYPO_CUTOFF)
        if close:
            typos.append(f'{key!r} (did you mean {close[0]!r}?)')
    if typos:
        raise KeyError(
            'Unknown top-level config key(s) ' + ', '.join(typos) +
            ': the Runner would ignore them. Rename them (a variable of '
            'your own: a name not this close to a Runner key).')


def _forwarded_options(cls, cfg: dict) -> Optional[set]:
    """The options a hook class's ``**kwargs`` take, for the hooks that
    forward them somewhere known; None when unknown."""
    from mmengine.hooks import CheckpointHook, EMAHook
    from mmengine.registry import MODELS
    if issubclass(cls, CheckpointHook):
        # passed to Runner.save_checkpoint, whose every argument
        # CheckpointHook already gives: nothing else is accepted
        return set()
    if issubclass(cls, EMAHook):
        ema = cfg.get('ema_type', 'ExponentialMovingAverage')
        ema = MODELS.get(ema) if isinstance(ema, str) else ema
        if ema is not None:
            return init_options(ema)[0] - {'model'}
    return None


def init_options(cls) -> Tuple[set, bool]:
    """The keyword arguments of ``cls.__init__`` (and of its parents'
    through ``**kwargs``), and whether that set is complete (False when a
    ``**kwargs`` goes somewhere unknown)."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        if klass is object:
            break
        params = list(inspect.signature(init).parameters.values())[1:]
        names |= {
            p.name
            for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                          p.KEYWORD_ONLY)
        }
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names, True
    return names, False


def _hook_configs(cfg) -> Iterator[Tuple[str, dict]]:
    default_hooks = cfg.get('default_hooks') or {}
    for name, hook in default_hooks.items():
        if isinstance(hook, dict):
            yield f'default_hooks.{name}', hook
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if isinstance(hook, dict):
            yield f'custom_hooks[{i}]', hook


def check_hook_options(cfg) -> None:
    """Raise ``TypeError`` naming each hook option (``default_hooks`` and
    ``custom_hooks``) that the hook's class does not take, with a 'did you
    mean' suggestion, before the Runner is built: mmengine's
    ``CheckpointHook`` keeps unknown options and fails when it first saves,
    after a whole epoch. Hooks whose type is not registered are left to the
    Runner's own error."""
    from mmengine.registry import HOOKS
    errors = []
    with HOOKS.switch_scope_and_registry(cfg.get('default_scope')) as hooks:
        for where, hook in _hook_configs(cfg):
            cls = hook.get('type')
            if isinstance(cls, str):
                cls = hooks.get(cls)
            if not inspect.isclass(cls):
                continue
            options, complete = init_options(cls)
            if not complete:
                forwarded = _forwarded_options(cls, hook)
                if forwarded is None:
                    continue  # **kwargs go somewhere unknown
                options |= forwarded
            allowed = options | {'type', 'priority', '_scope_'}
            for key in hook:
                if key not in allowed:
                    errors.append(
                        f'{where}: {cls.__name__} has no option {key!r}'
                        f'{_did_you_mean(key, sorted(options))}; its options'
                        f': {", ".join(sorted(options))}')
    if errors:
        raise TypeError('\n'.join(errors))


def _train_length(train_cfg: dict) -> Tuple[Optional[int], Optional[str]]:
    """``(length, option)`` of the run in the schedulers' default unit:
    ``max_epochs`` of an epoch-based loop, ``max_iters`` of an
    iteration-based one."""
    if 'max_epochs' in train_cfg:
        return train_cfg['max_epochs'], 'max_epochs'
    if 'max_iters' in train_cfg:
        return train_cfg['max_iters'], 'max_iters'
    return None, None


def check_schedule(cfg) -> None:
    """Raise ``ValueError`` when a parameter scheduler would have nothing
    to schedule: it begins at or after its end, where the end is the run's
    length when not given (``train_cfg.max_epochs`` equal to the warm-up's
    length leaves the cosine schedule after it no epoch). mmengine raises
    ``end should be larger than begin`` without naming the options."""
    train_cfg = cfg.get('train_cfg') or {}
    length, option = _train_length(train_cfg)
    schedulers = cfg.get('param_scheduler')
    if isinstance(schedulers, dict) and 'type' in schedulers:
        schedulers = [schedulers]
    if length is None or not isinstance(schedulers, (list, tuple)):
        return
    epoch_based = option == 'max_epochs'
    unit = 'epoch' if epoch_based else 'iteration'
    errors = []
    for i, scheduler in enumerate(schedulers):
        if (not isinstance(scheduler, dict)
                or bool(scheduler.get('by_epoch', True)) != epoch_based):
            continue  # another unit than train_cfg's length
        begin = scheduler.get('begin', 0)
        name = f'param_scheduler[{i}] ({scheduler.get("type")})'
        if 'end' in scheduler:
            if begin >= scheduler['end']:
                errors.append(f'{name}: begin={begin} must be smaller than '
                              f'end={scheduler["end"]}')
            continue
        if begin >= length:
            before = [
                f'param_scheduler[{j}] ({s.get("type")}) ends at {begin}'
                for j, s in enumerate(schedulers)
                if j != i and isinstance(s, dict) and s.get('end') == begin
            ]
            warmup = f' ({before[0]})' if before else ''
            errors.append(
                f'{name} begins at {unit} {begin}{warmup} and runs to the end'
                f' of training, but train_cfg.{option}={length} ends '
                f'training there: {option} must be larger than {begin}')
    if errors:
        raise ValueError('\n'.join(errors))


def check_wrapper_options(cfg) -> None:
    """Raise ``ValueError`` for a top-level ``find_unused_parameters``
    that would be ignored: mmengine 0.10.7 passes it to DDP only when the
    config has no ``model_wrapper_cfg``, and the ImageNet configs have one
    (``FlatReduceDDP``). The wrapper takes the option itself."""
    wrapper = cfg.get('model_wrapper_cfg')
    if (cfg.get('find_unused_parameters') and wrapper
            and 'find_unused_parameters' not in wrapper):
        raise ValueError(
            'find_unused_parameters=True would be ignored: mmengine passes '
            'it to DDP only without model_wrapper_cfg, and this config has '
            f'model_wrapper_cfg={dict(wrapper)!r}; set '
            'model_wrapper_cfg.find_unused_parameters=True instead')


def check_config(cfg) -> None:
    """The checks of a config's keys: top-level key typos
    (:func:`check_top_level_keys`), hook options
    (:func:`check_hook_options`) and the DDP wrapper's
    (:func:`check_wrapper_options`). Run by ``tools/train.py`` and
    ``tools/test.py`` before the Runner is built (``tools/train.py`` checks
    the schedule, :func:`check_schedule`, once the Runner is built and
    before it trains)."""
    check_top_level_keys(cfg)
    check_hook_options(cfg)
    check_wrapper_options(cfg)
