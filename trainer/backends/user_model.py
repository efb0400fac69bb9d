"""Rebuilding a user's own model class for ``load_model``, without unpickling anything.

A saved folder holds the weights; the model's code stays the user's. ``load_model(path, model=...)``
takes an instance, a class or factory to call with no arguments, or a ``"package.module:name"``
string to import. Without ``model=``, the class recorded in ``metadata.json`` at save time is used
only if its module is already imported in this process: ``metadata.json`` is data from the folder,
and importing a module it names would let the folder pick code to run.
"""
from __future__ import annotations

import importlib
import re
import sys
from typing import Any, Optional

_NAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def factory_name(cls: type) -> Optional[str]:
    """``"module:QualName"`` for a class that can be found again by name; None for a class defined
    inside a function."""
    if "<locals>" in cls.__qualname__:
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def _attribute(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def import_by_name(name: str) -> Any:
    """The object ``"package.module:attribute"`` names, importing the module (the caller's choice)."""
    if not _NAME.match(name):
        raise ValueError(f"model={name!r}: give a \"package.module:ClassOrFunction\" name, e.g. model=\"mynets:Net\"")
    module_name, qualname = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model={name!r}: cannot import {module_name!r} ({exc}); put it on sys.path, "
                         f"or pass the class itself: model=Net") from None
    try:
        return _attribute(module, qualname)
    except AttributeError:
        raise ValueError(f"model={name!r}: module {module_name!r} has no {qualname!r}") from None


def build_user_model(model: Any, base: type, base_name: str) -> Any:
    """An instance of ``base`` from what ``model=`` gave: the instance itself, a class or a factory
    called with no arguments, or a ``"package.module:name"`` string naming one."""
    if isinstance(model, base):
        return model
    if isinstance(model, str):
        model = import_by_name(model)
    if not callable(model):
        raise TypeError(f"model= must be a {base_name} instance, a class or function returning one, or a "
                        f"\"package.module:name\" string; got {type(model).__name__}")
    try:
        built = model()
    except TypeError as exc:
        shown = getattr(model, "__qualname__", repr(model))
        raise TypeError(f"model={shown} cannot be built without arguments ({exc}); pass an instance built as "
                        f"for training, model={shown}(...), or a function that builds one") from None
    if not isinstance(built, base):
        raise TypeError(f"model= built a {type(built).__name__}, not a {base_name}")
    return built


def recorded_class(meta: dict[str, Any], base: type) -> Optional[type]:
    """The model class ``metadata.json`` recorded, if its module is imported here already and it
    names a subclass of ``base``; None otherwise (nothing is imported)."""
    name = meta.get("factory")
    if not isinstance(name, str) or not _NAME.match(name):
        return None
    module_name, qualname = name.split(":")
    module = sys.modules.get(module_name)
    if module is None:
        return None
    try:
        cls = _attribute(module, qualname)
    except AttributeError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, base) else None


def missing_model_message(meta: dict[str, Any], base_name: str, pickled: bool) -> str:
    """What to pass to load a custom model when load_model cannot rebuild it by itself."""
    cls = meta.get("module_class") or "model"
    short = cls.rsplit(".", 1)[-1]
    name = meta.get("factory")
    ways = [f"load_model(path, model={short}) with the class (or a function returning the {base_name}, "
            f"or an instance {short}(...) built as for training)"]
    if isinstance(name, str) and _NAME.match(name) and not name.startswith("__main__:"):
        ways.append(f"load_model(path, model={name!r}) to import it by name")
    message = (f"the saved model is your own {cls}, and load_model does not run code from the folder to rebuild it. "
               f"Pass it: " + "; or ".join(ways))
    if pickled:
        message += (". Only for a folder you trust completely: load_model(path, trust_pickle=True) unpickles the "
                    "module saved there, which can run any code")
    return message
