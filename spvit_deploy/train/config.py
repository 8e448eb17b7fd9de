"""Training configs: frozen dataclasses with a schema version, the official SPViT recipe's
defaults per model size, and validation that turns every impossible value into one line.

`make_config(model, data, ...)` fills what the caller left out from `recipe_for(dims)`;
`TrainConfig.from_dict` rejects unknown keys, so a run folder's `config.json` round-trips.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import SpvitError
from ..families import ModelDims

SCHEMA_VERSION = 1
DISTILL = ("soft", "hard", "none")
AMP = ("auto", "bf16", "fp16", "none")
SCHEDULES = ("cosine", "constant")
# lambda * dense_gmacs^2 of the official recipe: DeiT-Ti 20*1.25^2=31, DeiT-S 3*4.6^2=63,
# DeiT-B 0.08*17.6^2=25; models outside the recipe get lambda = LAMBDA_SCALE / dense_gmacs^2
LAMBDA_SCALE = 35.0


@dataclass(frozen=True)
class DataConfig:
    """ImageFolder data (`root/train/<class>/*`, `root/val/<class>/*`) and augmentation."""

    root: str
    batch_size: int = 64  # per process
    eval_batch_size: int = 0  # 0: twice the training batch
    workers: int = 0
    scale: tuple[float, float] = (0.08, 1.0)  # random-resized-crop area range
    hflip: float = 0.5
    color_jitter: float = 0.4
    auto_augment: str = ""  # a timm policy such as rand-m9-mstd0.5-inc1; "" for none
    mixup: float = 0.0
    cutmix: float = 0.0
    smoothing: float = 0.1


@dataclass(frozen=True)
class SearchConfig:
    """Gate search: weights and gates trained together under the complexity loss."""

    epochs: int = 10
    lr: float = 1e-4  # weights, constant in the official recipe
    gate_lr: float = 1e-3  # gate and head-mixing logits, no weight decay
    lam: float = 0.0  # complexity-loss weight on (target - GMACs)^2; make_config fills the recipe's
    weight_decay: float = 0.05
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    min_lr: float = 1e-5


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning of the searched supernet with the gates pinned to the derived spec."""

    epochs: int = 130
    lr: float = 1e-4
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    schedule: str = "cosine"
    warmup_epochs: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a compress/search/fine-tune run depends on; saved as `RUN_DIR/config.json`."""

    model: str
    data: DataConfig
    target_gmacs: float = 0.0  # absolute target; 0 when `target_ratio` is used
    target_ratio: float = 0.0  # fraction of the dense MACs; 0 when `target_gmacs` is used
    # latency targets (one target in all): milliseconds, or a speedup over the dense model, both predicted by
    # the latency table `latency_lut` (`spvit-deploy profile-latency`) at `latency_batch` (0: its only batch, or 1)
    target_latency_ms: float = 0.0
    target_speedup: float = 0.0
    latency_lut: str = ""
    latency_batch: int = 0
    latency_calibration: bool = True  # time the derived architecture against the dense one and re-derive
    ffn_multiple: int = 0  # latency targets: derived FFN widths in multiples of this (0: the table backend's default)
    pretrained: bool = False
    checkpoint: str = ""  # dense weights; "" with pretrained=False means random weights
    img_size: int = 0  # 0: the model's
    num_classes: int = 0  # 0: the number of class folders
    search: SearchConfig = field(default_factory=SearchConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    distill: str = "hard"
    distill_alpha: float = 0.5  # weight of the distillation term
    distill_tau: float = 1.0  # soft distillation temperature
    amp: str = "auto"
    clip_grad: float = 5.0  # max grad norm per optimizer; 0 turns clipping off
    seed: int = 0
    checkpoint_every: int = 200  # steps; a checkpoint is also written at every epoch end
    recipe: str = ""  # which per-size defaults filled the gaps (informational)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"]["scale"] = list(self.data.scale)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "config") -> "TrainConfig":
        if not isinstance(d, dict):
            raise SpvitError(f"{where}: expected a JSON object")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise SpvitError(
                f"{where}: schema_version {d.get('schema_version')!r} is not supported (this spvit-deploy reads "
                f"{SCHEMA_VERSION})"
            )
        top = _checked(cls, d, where, nested=("data", "search", "finetune"))
        top["data"] = DataConfig(**_checked(DataConfig, d.get("data"), f"{where}.data"))
        top["search"] = SearchConfig(**_checked(SearchConfig, d.get("search", {}), f"{where}.search"))
        top["finetune"] = FinetuneConfig(**_checked(FinetuneConfig, d.get("finetune", {}), f"{where}.finetune"))
        cfg = cls(**top)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise a one-line `SpvitError` for any impossible value."""
        d, s, f = self.data, self.search, self.finetune
        checks = [
            (bool(self.model), "model must be named"),
            (bool(d.root), "data root must be given (--data DIR)"),
            (self.target_gmacs >= 0 and self.target_ratio >= 0, "targets must be positive"),
            (self.target_latency_ms >= 0 and self.target_speedup >= 0 and self.latency_batch >= 0,
             "latency targets and --latency-batch must be positive"),
            (self.ffn_multiple >= 0, "--ffn-multiple must be positive"),
            (sum(bool(t) for t in (self.target_gmacs, self.target_ratio, self.target_latency_ms,
                                   self.target_speedup)) <= 1,
             "give one target of --target-gmacs, --target-ratio, --target-latency-ms, --target-speedup, not both"),
            (bool(self.latency_lut) or not (self.target_latency_ms or self.target_speedup),
             "--target-latency-ms and --target-speedup need --latency-lut lut.json (spvit-deploy profile-latency)"),
            (self.target_ratio <= 1.0, f"--target-ratio {self.target_ratio} must be in (0, 1]"),
            (not (self.pretrained and self.checkpoint), "give either --pretrained or --checkpoint, not both"),
            (d.batch_size >= 1 and d.eval_batch_size >= 0 and d.workers >= 0,
             "batch sizes must be >= 1 and --workers >= 0"),
            (0 < d.scale[0] <= d.scale[1] <= 1, f"crop scale {list(d.scale)} must satisfy 0 < lo <= hi <= 1"),
            (0 <= d.hflip <= 1 and d.color_jitter >= 0 and d.mixup >= 0 and d.cutmix >= 0,
             "hflip must be in [0, 1]; color jitter, mixup and cutmix >= 0"),
            (0 <= d.smoothing < 1, "label smoothing must be in [0, 1)"),
            (s.epochs >= 0 and f.epochs >= 0, "epochs must be >= 0"),
            (s.lr > 0 and s.gate_lr > 0 and f.lr > 0, "learning rates must be positive"),
            (0 <= s.min_lr <= s.lr and 0 <= f.min_lr <= f.lr, "min lr must be in [0, lr]"),
            (s.lam >= 0, "--lambda must be >= 0"),
            (s.weight_decay >= 0 and f.weight_decay >= 0, "weight decay must be >= 0"),
            (s.schedule in SCHEDULES and f.schedule in SCHEDULES, f"schedule must be one of {list(SCHEDULES)}"),
            (s.warmup_epochs >= 0 and f.warmup_epochs >= 0, "warmup epochs must be >= 0"),
            (self.distill in DISTILL, f"--distill must be one of {list(DISTILL)}"),
            (0 <= self.distill_alpha <= 1 and self.distill_tau > 0, "distill alpha must be in [0, 1], tau > 0"),
            (self.amp in AMP, f"--amp must be one of {list(AMP)}"),
            (self.clip_grad >= 0, "--clip-grad must be >= 0"),
            (self.checkpoint_every >= 1, "--checkpoint-every must be >= 1"),
            (self.img_size >= 0 and self.num_classes >= 0, "--img-size and --num-classes must be positive"),
        ]
        numbers = [self.target_gmacs, self.target_ratio, self.target_latency_ms, self.target_speedup, s.lr, s.gate_lr,
                   s.lam, f.lr, self.distill_tau, self.clip_grad]
        if not all(math.isfinite(x) for x in numbers):
            raise SpvitError("config values must be finite numbers")
        for ok, message in checks:
            if not ok:
                raise SpvitError(message)

    def differences(self, other: "TrainConfig") -> list[str]:
        """Dotted names of the fields that differ (to refuse resuming with another config)."""
        a, b = _flat(self.to_dict()), _flat(other.to_dict())
        return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and k != "recipe")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _checked(cls: type, d: Any, where: str, nested: tuple[str, ...] = ()) -> dict[str, Any]:
    """`d` as constructor kwargs of `cls`: unknown keys rejected, types checked."""
    if not isinstance(d, dict):
        raise SpvitError(f"{where}: expected a JSON object")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise SpvitError(f"{where}: unknown keys {unknown}; allowed: {sorted(names)}")
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in nested:
            continue
        want = names[k].default  # dataclasses.MISSING for required fields: checked as strings
        if isinstance(want, bool):
            ok = isinstance(v, bool)
        elif isinstance(want, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok else v
        elif isinstance(want, int):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(want, tuple):
            ok = isinstance(v, (list, tuple)) and len(v) == len(want)
            v = tuple(float(x) for x in v) if ok else v
        else:
            ok = isinstance(v, str)
        if not ok:
            raise SpvitError(f"{where}: '{k}' has the wrong type ({type(v).__name__})")
        out[k] = v
    return out


@dataclass(frozen=True)
class Recipe:
    """Per-size defaults of the official SPViT recipe (SPVIT.md)."""

    name: str
    lam: float
    gate_lr: float
    search_epochs: int = 10
    finetune_epochs: int = 130
    finetune_epochs_distill: int = 200


RECIPES = {  # (family, depth, embed width) -> recipe
    ("vit", 12, 192): Recipe("deit_tiny", lam=20.0, gate_lr=1e-3),
    ("vit", 12, 384): Recipe("deit_small", lam=3.0, gate_lr=5e-4),
    ("vit", 12, 768): Recipe("deit_base", lam=0.08, gate_lr=1e-3),
    # SPVIT-SWIN.md section 7: 20 search epochs, gate lr 1e-3 effective (Swin-B's 92 x 8 batch: 0.72x)
    ("swin", 12, 96): Recipe("swin_tiny", lam=2.8, gate_lr=1e-3, search_epochs=20),
    ("swin", 24, 96): Recipe("swin_small", lam=0.4, gate_lr=1e-3, search_epochs=20),
    ("swin", 24, 128): Recipe("swin_base", lam=0.1, gate_lr=7.2e-4, search_epochs=20),
}


def recipe_for(dims: ModelDims, dense_gmacs: float) -> Recipe:
    """The official defaults for DeiT-T/S/B and Swin-T/S/B shapes; other models get lambda scaled to their MACs."""
    key = (dims.family, dims.depth, dims.embed_dim)
    if key in RECIPES:
        return RECIPES[key]
    return Recipe("scaled", lam=LAMBDA_SCALE / dense_gmacs**2, gate_lr=1e-3)


def make_config(model: str, data: DataConfig, dims: ModelDims, dense_gmacs: float, **given: Any) -> TrainConfig:
    """A validated config: `given` (None values ignored; `search_*`/`finetune_*` prefixes address the
    stage configs) on top of the recipe's per-size defaults."""
    given = {k: v for k, v in given.items() if v is not None}
    recipe = recipe_for(dims, dense_gmacs)
    distill = given.get("distill", TrainConfig.distill)
    search = {"epochs": recipe.search_epochs, "gate_lr": recipe.gate_lr, "lam": recipe.lam}
    finetune = {"epochs": recipe.finetune_epochs_distill if distill != "none" else recipe.finetune_epochs}
    top: dict[str, Any] = {}
    for k, v in given.items():
        if k.startswith("search_"):
            search[k.removeprefix("search_")] = v
        elif k.startswith("finetune_"):
            finetune[k.removeprefix("finetune_")] = v
        else:
            top[k] = v
    known = {f.name for f in fields(TrainConfig)}
    bad = sorted((set(top) - known) | (set(search) - {f.name for f in fields(SearchConfig)})
                 | (set(finetune) - {f.name for f in fields(FinetuneConfig)}))
    if bad:
        raise TypeError(f"make_config: unknown options {bad}")
    cfg = TrainConfig(model=model, data=data, search=SearchConfig(**search), finetune=FinetuneConfig(**finetune),
                      recipe=recipe.name, **top)
    cfg.validate()
    return cfg


def with_data(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """`cfg` with some `DataConfig` fields replaced."""
    return replace(cfg, data=replace(cfg.data, **changes))


def config_for(model: str, data: DataConfig | str, img_size: int = 0, num_classes: int = 0, **given: Any) -> TrainConfig:
    """`make_config` for a named model: its dimensions and dense MACs looked up (no weights built);
    `num_classes` 0 counts the class folders of `data`."""
    from ..macs import cost
    from ..models import dims_for
    from .folders import check_image_folder

    data = DataConfig(root=data) if isinstance(data, str) else data
    classes = num_classes or len(check_image_folder(data.root))
    dims = dims_for(model, num_classes=classes, img_size=img_size or None)
    return make_config(model, data, dims, cost(dims).gmacs, img_size=img_size, num_classes=num_classes, **given)
