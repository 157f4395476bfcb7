"""Checkpoints that are data only: written without Python objects, read without running any code.

RecBole pickles its ``Config`` object into every checkpoint. Loading that back needs the class on an
allow-list, and an allow-listed class can be *called* by the file with arguments of its choosing:
RecBole's ``Config`` evaluates strings and can open a process group, so a crafted checkpoint runs
code. The plugin therefore writes the config as plain values (:func:`config_to_data`) and loads every
checkpoint with ``torch.load(weights_only=True)`` and **no** allow-list. A checkpoint that still holds
a pickled ``Config`` (plain RecBole, or this plugin before 0.2) is refused with
:class:`UntrustedCheckpointError`, unless the caller trusts the file (``trust_checkpoint: True``);
even then its ``Config`` is read by :class:`StoredConfig`, a stand-in that only keeps attributes.
"""

import enum
import os
import pickle
import zipfile

import numpy as np
import torch
from recbole.utils import enum_type

from recbole_lightemb.config import Config

FORMAT_KEY = "__recbole_lightemb_config__"
FORMAT_VERSION = 1
ENUMS = {cls.__name__: cls for cls in vars(enum_type).values()
         if isinstance(cls, type) and issubclass(cls, enum.Enum) and cls.__module__ == enum_type.__name__}
"""RecBole's enum types, by name: the only non-plain values a config holds besides ``device``."""

LEGACY_CONFIG_CLASSES = ("recbole.config.configurator.Config", "recbole_lightemb.config.Config")
TRUST_HINT = ("if you trust the file, pass trust_checkpoint=True (config key, or the argument of "
              "recbole_lightemb.load_data_and_model); it is then read as data, still without running code")


def first_line(error, empty=""):
    """The first line of ``error``'s message (``empty`` when it has none): what a one-line refusal quotes."""
    message = str(error)
    return message.splitlines()[0] if message else empty


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that would need code on the allow-list to load."""


def _encode(value, key):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum) and ENUMS.get(type(value).__name__) is type(value):
        return {"__enum__": type(value).__name__, "name": value.name}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # NumPy and torch scalars and arrays
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_encode(v, key) for v in value]
    raise TypeError(f"config key {key!r}: a {type(value).__name__} cannot be written to a data-only checkpoint")


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__enum__", "name"}:
        try:
            return ENUMS[value["__enum__"]][value["name"]]
        except KeyError:
            raise CheckpointError(f"config value {value!r}: not one of RecBole's enum values") from None
    if set(value) == {"__device__"}:
        return _device(value["__device__"])
    return {k: _decode(v) for k, v in value.items()}


def _device(saved):
    """The saved device if this machine has it, else the CPU (a GPU checkpoint opened on a laptop)."""
    return torch.device(saved) if saved.startswith("cuda") and torch.cuda.is_available() else torch.device("cpu")


def config_to_data(config):
    """``config`` as nested dicts, lists and scalars: what a plugin checkpoint stores."""
    return {FORMAT_KEY: FORMAT_VERSION, "model": config["model"], "dataset": config["dataset"],
            "final_config_dict": _encode(dict(config.final_config_dict), "config"),
            "parameters": _encode(getattr(config, "parameters", {}), "parameters")}


def config_from_data(data, path="<checkpoint>"):
    """A :class:`Config` rebuilt from :func:`config_to_data`'s output, without running ``Config.__init__``
    (which evaluates strings and may start a process group)."""
    if not isinstance(data, dict) or not isinstance(data.get("final_config_dict"), dict):
        raise CheckpointError(f"checkpoint {path!r}: its 'config' entry is not a saved RecBole config")
    final = _decode(data["final_config_dict"])
    final["device"] = _device(str(final.get("device", "cpu")))
    final["single_spec"], final["local_rank"] = True, 0  # a loaded model is used by this one process
    config = Config.__new__(Config)
    config.__dict__.update(model=final.get("model", data.get("model")), dataset=final.get("dataset", data.get("dataset")),
                           final_config_dict=final, parameters=_decode(data.get("parameters") or {}),
                           model_class=None, internal_config_dict={}, external_config_dict={})
    config.compatibility_settings()  # RecBole's NumPy aliases (np.float, …), as its Config sets them
    return config


class StoredConfig:
    """Stands in for RecBole's ``Config`` when a trusted legacy checkpoint is read: calling it does
    nothing, and its state is kept as a plain dict to be converted by :func:`config_from_data`."""

    def __init__(self, *args, **kwargs):
        self.state = {}

    def __setstate__(self, state):
        self.state = dict(state) if isinstance(state, dict) else {}


class _StoredEnum:
    """Stands in for one of RecBole's enum classes in a trusted legacy checkpoint: the file may build it with
    any state, and only its value is read back (the real member is looked up, never rebuilt or changed)."""

    enum = None

    def __init__(self, value=None, *args, **kwargs):
        self.value = value

    def __setstate__(self, state):
        pass


ENUM_STAND_INS = {cls: type(f"Stored{name}", (_StoredEnum,), {"enum": cls}) for name, cls in ENUMS.items()}


def _real_enums(value, path):
    """``value`` with every :class:`_StoredEnum` replaced by the real member of that value."""
    if isinstance(value, _StoredEnum):
        try:
            return value.enum(value.value)
        except (ValueError, TypeError):
            raise CheckpointError(f"checkpoint {path!r}: {value.value!r} is not a {value.enum.__name__} value") from None
    if isinstance(value, dict):
        return {k: _real_enums(v, path) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_real_enums(v, path) for v in value]
    return value


class _StoredClass:
    """Stands in for a class a legacy config refers to (its YAML loader): never called with effect."""

    def __init__(self, *args, **kwargs):
        pass


def _legacy_globals(path):
    """Stand-ins for what a legacy checkpoint names: RecBole's ``Config``, its YAML loader and model class
    (a reference, never called with effect), RecBole's enums (read back by value) and NumPy scalars (data)."""
    names = [(StoredConfig, name) for name in LEGACY_CONFIG_CLASSES]
    names += [(_StoredClass, "yaml.loader.FullLoader"), (_StoredClass, "yaml.loader.SafeLoader")]
    names += [(_StoredClass, name) for name in torch.serialization.get_unsafe_globals_in_checkpoint(path)
              if name.startswith("recbole.model.")]
    names += [(stand_in, f"{cls.__module__}.{cls.__qualname__}") for cls, stand_in in ENUM_STAND_INS.items()]
    multiarray = getattr(np, "_core", None) or np.core  # NumPy 2 renamed it; NumPy 1 has only np.core
    scalars = [multiarray.multiarray.scalar, np.dtype]
    scalars += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return names + scalars


def check_archive(path):
    """A checkpoint is held in memory as its archive says: torch writes every member uncompressed, so a
    compressed member (a decompression bomb's shape) or members larger than the file are refused before reading."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return  # torch's legacy (non-zip) format: a pickle stream no larger than the file
    with archive:
        members = archive.infolist()
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise CheckpointError(f"checkpoint {path!r}: member {packed[0]!r} is compressed; PyTorch writes checkpoints "
                              "uncompressed, so the file was not written by torch.save")
    total = sum(m.file_size for m in members)
    if total > os.path.getsize(path):
        raise CheckpointError(f"checkpoint {path!r}: its members claim {total} bytes, more than the file's "
                              f"{os.path.getsize(path)}")


def _read(path, map_location, allow):
    with torch.serialization.safe_globals(allow):
        return torch.load(path, map_location=map_location, weights_only=True)


def _pickle_protocol(path):
    """The pickle protocol of a torch zip checkpoint's ``data.pkl`` (``None`` when it is not one)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            head = archive.open(name).read(2)
    except (zipfile.BadZipFile, StopIteration, OSError):
        return None
    return head[1] if len(head) == 2 and head[0] == 0x80 else None


def _refusal(message):
    """The line of torch's weights-only error that names what was refused, or ``None`` for a corrupt file."""
    for line in message.splitlines():
        if any(k in line.lower() for k in ("unsupported global", "trying to call reduce", "can only create new object")):
            return line.strip().split(" was not an allowed global")[0]
    return None


def load_checkpoint(path, map_location=None, trust=False):
    """The checkpoint at ``path`` as a dict whose ``config`` is a :class:`Config` (or ``None``).

    Nothing in the file is called: plugin checkpoints need no allow-list; legacy ones raise
    :class:`UntrustedCheckpointError` unless ``trust``, and are then read through stand-ins.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r}: no such file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path!r}: the file is empty (a run stopped while writing it?)")
    check_archive(path)
    try:
        checkpoint = _read(path, map_location, [])
    except pickle.UnpicklingError as error:
        refusal = _refusal(str(error))
        if refusal is None and _pickle_protocol(path) == 4:
            raise CheckpointError(f"checkpoint {path!r}: written with pickle protocol 4 (as plain RecBole writes), "
                                  "which PyTorch's weights-only loader cannot parse; the plugin does not read it") \
                from None
        if refusal is None:
            raise CheckpointError(f"checkpoint {path!r}: not a readable PyTorch checkpoint (corrupt or cut short)") \
                from None
        legacy = any(name in refusal for name in LEGACY_CONFIG_CLASSES + ("enum_type", "yaml.loader"))
        if not legacy:
            raise CheckpointError(f"checkpoint {path!r}: refused, it holds Python objects that are not data "
                                  f"({refusal})") from None
        if not trust:
            raise UntrustedCheckpointError(
                f"checkpoint {path!r} stores RecBole's Config as a pickled object (written by plain RecBole or "
                f"recbole-lightemb < 0.2); loading it would allow-list code that a crafted file can call; "
                f"{TRUST_HINT}") from None
        try:
            checkpoint = _read(path, map_location, _legacy_globals(path))
        except Exception as error:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {path!r}: even as trusted data it holds objects that are not data "
                                  f"({_refusal(str(error)) or type(error).__name__})") from None
    except Exception as error:  # noqa: BLE001  (torch raises many kinds for a corrupt file)
        raise CheckpointError(f"checkpoint {path!r}: not a readable PyTorch checkpoint "
                              f"({type(error).__name__}: {first_line(error)})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path!r}: expected a RecBole checkpoint (a dict with 'state_dict')")
    stored = checkpoint.get("config")
    if isinstance(stored, StoredConfig):
        parameters = _real_enums(stored.state.get("parameters"), path)
        stored = {"final_config_dict": _real_enums(stored.state.get("final_config_dict"), path),
                  "parameters": parameters if isinstance(parameters, dict) else {}}
        if not isinstance(stored["final_config_dict"], dict):
            raise CheckpointError(f"checkpoint {path!r}: its pickled Config holds no settings")
    checkpoint["config"] = None if stored is None else config_from_data(stored, path)
    return checkpoint
