"""A stand-in for transformers >= 4.56 (tests/test_compat.py): every name exists,
except the helpers 4.56 removed from ``transformers.modeling_utils``, which
breaks mmpretrain 1.2.0's BLIP import exactly as the real one does."""
import importlib.abc
import importlib.machinery
import sys
import types

__version__ = '4.56.0'
REMOVED = {'apply_chunking_to_forward', 'find_pruneable_heads_and_indices',
           'prune_linear_layer'}


class _AnyType(type):
    # every stand-in class counts as a subclass of every other one
    def __subclasscheck__(cls, subclass):
        return True

    def __getattr__(cls, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _Stub()


class _Stub(metaclass=_AnyType):

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) else self

    def __getattr__(self, name):
        return _Stub()

    def __getitem__(self, key):
        return _Stub()


_CLASSES = {}


def _name(module, name):
    if name.startswith('__'):
        raise AttributeError(name)
    if module == 'transformers.modeling_utils' and name in REMOVED:
        raise ImportError(name)
    if name not in _CLASSES:
        _CLASSES[name] = _AnyType(name, (_Stub, ), {})
    return _CLASSES[name]


class _Module(types.ModuleType):

    def __getattr__(self, name):
        return _name(self.__name__, name)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):

    def find_spec(self, name, path, target=None):
        if name.startswith('transformers.'):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        module = _Module(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())


def __getattr__(name):
    return _name(__name__, name)
