"""Training configuration: F-net's and the paper's hyperparameters and the project's loss as defaults, from
YAML and/or flags.

Precedence: dataclass defaults < YAML file (``--config``) < command-line flags. YAML keys are
the field names of :class:`TrainConfig`; an unknown key is an error naming it and the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from .. import defaults
from ..data import PreprocessConfig
from ..presets import PRESETS, TRAINED, check_preset

# Keys that may change when a run is resumed; every other key must equal the checkpoint's.
RESUMABLE_CHANGES = frozenset({"iterations", "checkpoint_every", "log_every", "device", "progress", "tensorboard",
                               "num_threads", "out_dir", "train_csv", "train_plate", "val_csv", "val_plate",
                               "val_every", "stats_cache", "bn_batches", "ema_decay"})


@dataclass
class TrainConfig:
    """Everything that defines a training run (defaults: Ounkomol et al. 2018 / the Spotlight paper, and the
    loss of docs/collapse.md).

    Data: ``train_csv`` (manifest), or ``train_plate`` (an HCS OME-Zarr plate) with ``signal_channels`` and
    ``target_channels`` (channel names) and optionally ``fields`` (fields of view, ``B/03/0``; default all);
    ``stored_masks`` (default None: the foreground masks ``spotlight preprocess`` stored with the pairs,
    a manifest's ``path_mask`` beside its ``otsu_threshold`` or a Zarr image's ``fg_mask``, are the Spotlight
    loss's ``mask=``; true: any ``path_mask`` too, e.g. ground-truth labels; false: none, M = Y > T),
    preprocessing (``voxel_size``, ``isotropic_voxel_size``,
    ``target_norm``, ``smooth_threshold``, ``crop_multiple``, ``min_foreground_fraction``),
    sampling (``patch_size`` z,y,x; ``batch_size``, the global batch split over processes;
    ``max_retries``). Model: F-net ``depth`` / ``base_channels``. Loss: ``loss`` (``"mse"`` or
    ``"spotlight"``); for Spotlight, ``preset`` (:mod:`spotlight_ops.presets`; default ``"trained"``:
    ``lam * MSE + (1 - lam) * Dice`` with the MSE over every voxel, ``mse_term: plain``, lam 0.5,
    k -0.95, T = 0 on Otsu-standardized targets; ``"spotlight"`` is the paper's loss, which collapses on
    the real data of docs/collapse.md) and any option of :func:`spotlight_ops.loss` (``lam``, ``k``,
    ``eps``, ``bins``, ``mse_term``, ``soft_mask``, ``mask_rule``, ``dice_denominator``, ``empty_pools``,
    ``per_channel``, ``mse_normalization``, ``reduction``), each the preset's unless given: the
    criterion is ``SpotlightLoss.from_preset(preset, **options)`` (:func:`~.trainer.make_criterion`), its
    options checked by the op library. Optimiser: Adam ``lr``, ``betas``. Schedule: ``iterations``,
    ``checkpoint_every``, ``log_every``, ``seed``. Runtime: ``device`` (auto/cpu/cuda), ``amp``
    (auto = on for CUDA only), ``amp_dtype``, ``deterministic``, ``num_threads``,
    ``sync_batchnorm``, ``progress``, ``tensorboard`` (auto = when installed). Learning rate:
    ``lr_schedule`` (``constant``, the paper's, or ``cosine``), ``warmup_iterations``, ``min_lr``
    (:func:`~spotlight_ops.training.schedule.learning_rate`).
    Validation (:mod:`.validation`): ``val_csv``, ``val_plate`` (with ``val_fields``; the training channels)
    or ``val_fraction`` of the training pairs,
    ``val_every``, ``val_patches``. Augmentation: ``augment`` (``none``, ``yx``, ``zyx``). Data larger
    than memory (:mod:`spotlight_ops.data.buffer`): ``buffer_size`` (0: every volume in memory),
    ``buffer_switch_every``, ``stats_cache`` (default ``<out_dir>/preprocess_stats.json``).
    Inference weights: ``ema_decay``, the decay of the exponential moving average of the weights that
    every written model holds (:mod:`.averaging`; 0: the last weights), and ``bn_batches``, the training
    batches over which its BatchNorm statistics are recomputed (:mod:`.batchnorm`; 0: keep the running
    averages of training).
    """

    train_csv: Optional[str] = None
    train_plate: Optional[str] = None
    signal_channels: Optional[tuple] = None
    target_channels: Optional[tuple] = None
    fields: Optional[tuple] = None
    stored_masks: Optional[bool] = None
    out_dir: Optional[str] = None
    loss: str = "spotlight"
    preset: str = TRAINED
    # The options of the Spotlight loss; None: the preset's (filled in when the config is made).
    lam: Optional[float] = None
    k: Optional[float] = None
    mse_term: Optional[str] = None
    eps: Optional[float] = None
    bins: Optional[int] = None
    soft_mask: Optional[str] = None
    mask_rule: Optional[str] = None
    dice_denominator: Optional[str] = None
    empty_pools: Optional[str] = None
    per_channel: Optional[bool] = None
    mse_normalization: Optional[str] = None
    reduction: Optional[str] = None
    lr: float = 1e-3
    betas: tuple = (0.5, 0.999)
    lr_schedule: str = "constant"
    warmup_iterations: int = 0
    min_lr: float = 0.0
    batch_size: int = 24
    patch_size: tuple = (32, 64, 64)
    iterations: int = 50_000
    depth: int = 4
    base_channels: int = 32
    checkpoint_every: int = 500
    log_every: int = 1
    seed: int = 0
    # the preprocessing keys, flat in the YAML; their defaults are PreprocessConfig's
    voxel_size: Optional[tuple] = PreprocessConfig.voxel_size
    isotropic_voxel_size: Optional[float] = PreprocessConfig.isotropic_voxel_size
    target_norm: str = PreprocessConfig.target_norm
    smooth_threshold: bool = PreprocessConfig.smooth_threshold
    crop_multiple: int = PreprocessConfig.crop_multiple
    min_foreground_fraction: float = PreprocessConfig.min_foreground_fraction
    max_retries: int = 1000
    device: str = "auto"
    amp: Union[str, bool] = "auto"
    amp_dtype: str = "bfloat16"
    deterministic: bool = False
    num_threads: Optional[int] = None
    sync_batchnorm: bool = False
    progress: bool = True
    tensorboard: Union[str, bool] = "auto"
    val_csv: Optional[str] = None
    val_plate: Optional[str] = None
    val_fields: Optional[tuple] = None
    val_fraction: float = 0.0
    val_every: int = 500
    val_patches: int = 16
    augment: str = "none"
    buffer_size: int = 0
    buffer_switch_every: int = 100
    stats_cache: Optional[str] = None
    bn_batches: int = 32
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        self._resolve_loss_options()
        for name in _FLOATS:
            setattr(self, name, _number(name, getattr(self, name), float))
        for name in _INTS:
            setattr(self, name, _number(name, getattr(self, name), int))
        self.betas = _numbers("betas", self.betas, float)
        self.patch_size = _numbers("patch_size", self.patch_size, int)
        if self.voxel_size is not None:
            self.voxel_size = _numbers("voxel_size", self.voxel_size, float)
        for name in _NAME_LISTS:
            setattr(self, name, _names(name, getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first bad key."""
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        for name in ("batch_size", "iterations", "checkpoint_every", "log_every", "base_channels", "crop_multiple",
                     "max_retries", "val_every", "val_patches"):
            positive_int(name)
        for name in ("buffer_size", "buffer_switch_every", "bn_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be a number in [0, 1) (0: write the last weights, no average), "
                             f"got {self.ema_decay!r}")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be a number in [0, 1), got {self.val_fraction!r}")
        if sum(bool(v) for v in (self.val_csv, self.val_plate, self.val_fraction)) > 1:
            raise ValueError("give one of val_csv, val_plate and val_fraction, not several")
        self._validate_plates()
        if self.augment not in ("none", "yx", "zyx"):
            raise ValueError(f"augment must be 'none', 'yx' or 'zyx', got {self.augment!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 0:
            raise ValueError(f"depth must be an integer >= 0, got {self.depth!r}")
        if self.loss not in ("mse", "spotlight"):
            raise ValueError(f"loss must be 'mse' or 'spotlight', got {self.loss!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= _MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {_MAX_SEED}] (what torch.manual_seed takes), "
                             f"got {self.seed!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.warmup_iterations < 0:
            raise ValueError(f"warmup_iterations must be >= 0, got {self.warmup_iterations!r}")
        if not 0.0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must lie in [0, lr = {self.lr}], got {self.min_lr!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if len(self.patch_size) != 3 or any(p < 1 for p in self.patch_size):
            raise ValueError(f"patch_size must be three positive integers (z, y, x), got {self.patch_size!r}")
        multiple = 2 ** self.depth
        if any(p % multiple for p in self.patch_size):
            raise ValueError(f"patch_size {self.patch_size} must be a multiple of 2**depth = {multiple} per axis")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.amp not in ("auto", True, False):
            raise ValueError(f"amp must be 'auto', true or false, got {self.amp!r}")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if self.tensorboard not in ("auto", True, False):
            raise ValueError(f"tensorboard must be 'auto', true or false, got {self.tensorboard!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or null, got {self.num_threads!r}")
        self.preprocess()  # validates the preprocessing keys

    def _validate_plates(self) -> None:
        """Training data from a manifest or a plate, and the plate keys only with a plate."""
        if self.train_csv and self.train_plate:
            raise ValueError("give train_csv or train_plate, not both")
        if self.stored_masks is not None and not isinstance(self.stored_masks, bool):
            raise ValueError(f"stored_masks must be true, false or null (preprocess's masks), got {self.stored_masks!r}")
        if self.train_plate or self.val_plate:
            missing = [n for n in ("signal_channels", "target_channels") if not getattr(self, n)]
            if missing:
                raise ValueError(f"a plate needs {' and '.join(missing)}: the channel names of the signal and "
                                 f"target (e.g. --signal-channels Phase3D --target-channels Nuclei)")
        if not self.train_plate:
            given = [n for n in ("fields",) if getattr(self, n)]
            if given or ((self.signal_channels or self.target_channels) and not self.val_plate):
                raise ValueError(f"{', '.join(given) or 'signal_channels and target_channels'} name(s) a plate's "
                                 f"content: give train_plate too (a manifest names its channels in its columns)")
        if self.val_fields and not self.val_plate:
            raise ValueError("val_fields names fields of view of val_plate: give val_plate too")

    def data_name(self) -> str:
        """The training data as the user named it (for messages)."""
        return str(self.train_plate or self.train_csv)

    def _resolve_loss_options(self) -> None:
        """Fills each loss option left None with the preset's; options that were given are checked by
        the op library (the loss's own one-line errors) and converted to their types."""
        check_preset(self.preset)
        resolved = {**{name: defaults.LOSS_DEFAULTS[name] for name in defaults.OPTIONS},
                    **{k: v for k, v in PRESETS[self.preset].items() if k in defaults.OPTIONS}}
        given = {name: getattr(self, name) for name in defaults.OPTIONS if getattr(self, name) is not None}
        if given:
            from ..functional import loss_options  # torch, only when options are given

            resolved = loss_options(**{**resolved, **given})
        for name, value in resolved.items():
            setattr(self, name, value)

    def loss_options(self) -> dict:
        """The keyword arguments of :meth:`SpotlightLoss.from_preset` beside :attr:`preset`: every option, and
        the threshold (the preset's on Otsu-standardized targets; each sample's Otsu threshold, None, for
        z-scored ones, whose foreground does not start at 0)."""
        out = {name: getattr(self, name) for name in defaults.OPTIONS}
        if self.target_norm != "otsu":
            out["threshold"] = None
        return out

    def preprocess(self) -> PreprocessConfig:
        """The data-preprocessing part, shared with prediction."""
        return PreprocessConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(PreprocessConfig)})

    def to_dict(self) -> dict:
        """Plain YAML-safe dict (tuples as lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"{source}: unknown config key(s) {', '.join(unknown)}; "
                             f"known keys: {', '.join(cls.field_names())}")
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"{source}: {err}" if source != "config" else str(err)) from None

    def differences(self, other: "TrainConfig") -> list[str]:
        """Keys (outside :data:`RESUMABLE_CHANGES`) whose values differ from ``other``'s."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs.get(k)]


_FLOATS = ("lr", "min_lr", "isotropic_voxel_size", "min_foreground_fraction", "ema_decay")
_MAX_SEED = 2 ** 64 - 1  # torch.manual_seed's largest; numpy's generators take any non-negative seed
_INTS = ("batch_size", "iterations", "depth", "base_channels", "checkpoint_every", "log_every", "seed",
         "crop_multiple", "max_retries", "num_threads", "warmup_iterations", "bn_batches")


def _number(name: str, value, kind: type):
    """``value`` as a ``kind`` (numeric strings too: YAML 1.1 reads ``1e-3`` as a string); None stays None."""
    if value is None and name in ("isotropic_voxel_size", "num_threads"):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {'a number' if kind is float else 'an integer'}, got {value!r}")
    try:
        number = kind(value) if not isinstance(value, str) or kind is float else int(value.strip())
    except (TypeError, ValueError):
        number = None
    if number is None or (kind is int and isinstance(value, float) and value != number):
        raise ValueError(f"{name} must be {'a number' if kind is float else 'an integer'}, got {value!r}")
    return number


_NAME_LISTS = ("signal_channels", "target_channels", "fields", "val_fields")


def _names(name: str, values) -> Optional[tuple]:
    """A list of names (channels, fields of view) as a tuple of strings; None or empty stays None."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                        and str(v).strip() for v in values):
        raise ValueError(f"{name} must be a list of names, got {values!r}")
    names = tuple(str(v).strip() for v in values)
    if len(set(names)) != len(names):
        raise ValueError(f"{name} names {sorted(n for n in set(names) if names.count(n) > 1)} more than once")
    return names or None


def _numbers(name: str, values, kind: type) -> tuple:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a list of numbers, got {values!r}")
    try:
        return tuple(_number(name, v, kind) for v in values)
    except ValueError:
        raise ValueError(f"{name} must be a list of {'numbers' if kind is float else 'integers'}, "
                         f"got {values!r}") from None


# Keys added since runs were first written, with the value runs written before them had (what their
# trainer did), so that such a run resumes as it trained: before stored_masks, masks never reached the loss.
OLDER_RUN_VALUES = {"stored_masks": False}


def older_run_defaults(values: dict) -> dict:
    """A stored config (``config.yaml``, a checkpoint's) with :data:`OLDER_RUN_VALUES` for the keys it lacks."""
    return {**OLDER_RUN_VALUES, **values}


def read_yaml(path: Union[str, Path]) -> dict:
    """The mapping in a YAML config file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: config file not found")
    raw = path.read_bytes()
    if b"\0" in raw:
        raise ValueError(f"{path}: not a YAML text file (binary content, byte 0 at offset {raw.index(0)}); "
                         f"give a YAML config of key: value lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a YAML text file (byte {raw[err.start]:#x} at offset {err.start} is not "
                         f"UTF-8); give a YAML config of key: value lines") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML ({_one_line(err)})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of keys to values, got {type(values).__name__}")
    return values


def build_config(yaml_path: Optional[Union[str, Path]] = None, overrides: Optional[dict[str, Any]] = None,
                 stored_run: bool = False) -> TrainConfig:
    """Defaults, then the YAML file's keys, then ``overrides`` (flags that were given; None means not given).
    ``stored_run``: the YAML is a run's own ``config.yaml`` (:func:`older_run_defaults` fill its missing keys)."""
    values = read_yaml(yaml_path) if yaml_path else {}
    if stored_run:
        values = older_run_defaults(values)
    source = str(yaml_path) if yaml_path else "config"
    unknown = sorted(set(values) - set(TrainConfig.field_names()))
    if unknown:
        raise ValueError(f"{source}: unknown config key(s) {', '.join(unknown)}; "
                         f"known keys: {', '.join(TrainConfig.field_names())}")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(values, source)


def _one_line(err) -> str:
    return " ".join(str(err).split())


def write_yaml(config: TrainConfig, path: Union[str, Path]) -> None:
    """Writes the config atomically (a kill mid-write leaves the old file or the new one)."""
    from ..files.runfiles import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def stored_config_keys(folder: Union[str, Path]) -> set:
    """The config keys stored in the newest intact checkpoint of ``folder`` (empty without one)."""
    values = _checkpoint_config(folder)
    return set(values[1]) if values else set()


def _checkpoint_config(folder: Union[str, Path]) -> Optional[tuple]:
    from ..files.checkpoint import CheckpointError, load_checkpoint

    for name in ("checkpoint_latest.pt", "checkpoint_last_good.pt"):
        path = Path(folder) / name
        if not path.is_file():
            continue
        try:
            return path, dict(load_checkpoint(path)["config"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            continue
    return None


def config_from_checkpoint(folder: Union[str, Path], overrides: Optional[dict[str, Any]] = None
                           ) -> Optional[TrainConfig]:
    """The config stored in the newest intact checkpoint of ``folder`` plus ``overrides``; None without one."""
    found = _checkpoint_config(folder)
    if found is None:
        return None
    path, values = found
    values = older_run_defaults(values)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(values, f"{path} (config)")
