"""params.yaml, validated before any work starts: one pydantic schema per stage.

``validate(params)`` checks the file as written (no unknown keys anywhere, known profiles and
architectures, λ lists sorted and positive) and every profile's merged stage parameters (types
and ranges). A mistake stops ``dvc repro`` in well under a second, naming the key, the value and
what is allowed. It imports neither torch nor CompressAI, so it is quick.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vrlic.training.defaults import MOO_CHOICES, NORMALIZATIONS, OPTIMIZERS, POSTTRAIN as D, TRAIN_CHOICES, WARMUPS

ARCHITECTURE_NAMES = ("bmshj2018-hyperprior", "mbt2018-mean", "mbt2018")  # = vrlic.codec.architectures (tested)
Arch = Literal["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Jobs = Union[Literal["auto"], Annotated[int, Field(ge=1)]]  # runs side by side; auto: the usable cores
Fraction = Annotated[float, Field(gt=0, le=1)]


def _increasing(v: list[float]) -> list[float]:
    if any(b <= a for a, b in zip(v, v[1:])):
        raise ValueError(f"lr_decay_at must be increasing, got {v}")
    return v


# one fraction of the iterations, or an increasing list of them: lr drops 10× at each
DecayAt = Union[Fraction, Annotated[list[Fraction], Field(min_length=1), AfterValidator(_increasing)]]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class Paths(Strict):
    data: str
    base_models: str
    posttrain_models: str
    offsets_models: str
    hyperlatent_models: str
    base_logs: str
    posttrain_logs: str
    offsets_logs: str
    hyperlatent_logs: str
    anchors: str
    classical: str
    posttrain: str
    offsets: str
    hyperlatent: str
    ablation_json: str
    ablation_csv: str
    noise: str
    figures: str
    timings: str
    bd_rates: Optional[str] = None
    bd_contrasts: Optional[str] = None
    metrics: Optional[str] = None
    plots: Optional[str] = None
    results_doc: Optional[str] = None
    solvers: Optional[str] = None
    solvers_csv: Optional[str] = None


class Data(Strict):
    source: Literal["embedded", "kodak", "folders"]
    train: list[str] = Field(min_length=1)
    val: list[str] = Field(min_length=1)
    train_dir: Optional[str] = None
    val_dir: Optional[str] = None
    cache_dir: Optional[str] = None
    kodak_lock: Optional[str] = None
    dir: Optional[str] = None
    crop_candidates: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _folders(self):
        if self.source in ("kodak", "folders") and not self.train_dir:
            raise ValueError(f"data.source {self.source} needs data.train_dir: a folder of training images "
                             "(e.g. DIV2K: `python -m vrlic.data.datasets fetch-train DEST`)")
        if self.source == "folders" and not self.val_dir:
            raise ValueError("data.source folders needs data.val_dir")
        return self


class BaseModels(Strict):
    source: Literal["train", "zoo", "checkpoint"]
    N: int = Field(gt=0)
    M: int = Field(gt=0)
    iters: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    crop: int = Field(ge=64, multiple_of=64)
    lr: float = Field(gt=0, lt=1)
    lr_decay_at: DecayAt
    aux_lr: float = Field(gt=0, lt=1)
    clip_max_norm: float = Field(ge=0)
    ckpt_every: int = Field(gt=0)
    seed: int = Field(ge=0)
    device: Device
    jobs: Jobs = 1
    nproc_per_node: int = Field(ge=1)  # from params.yaml's top level (vrlic.pipeline.params.stage_params)
    checkpoint: Optional[str] = None
    scratch_anchors: bool = False  # source train: the anchors at every λ too, not the base alone
    qualities: Optional[list[int]] = None
    metric: Literal["mse"] = "mse"
    reference_check: bool = True
    reference_psnr_tol: float = Field(gt=0)
    reference_bpp_rtol: float = Field(gt=0)

    @model_validator(mode="after")
    def _source(self):
        if self.source == "zoo" and not self.qualities:
            raise ValueError("source zoo needs qualities (1..8)")
        if self.qualities and not all(1 <= q <= 8 for q in self.qualities):
            raise ValueError(f"zoo qualities must lie in 1..8, got {self.qualities}")
        if self.source == "checkpoint" and not self.checkpoint:
            raise ValueError("source checkpoint needs checkpoint: the path of your CompressAI checkpoint")
        return self


def _check_variants(variants: Mapping[str, Mapping[str, Any]], common: Mapping[str, Any], what: str) -> None:
    """Each variant, merged over ``common``, must be a valid set of post-training settings."""
    for name, v in variants.items():
        try:
            PostTrainSettings(**{**common, **v})
        except ValidationError as e:
            raise ValueError(f"{what} {name!r}: {_first(e)}") from None


class PostTrainSettings(Strict):
    """The keys of a post-training variant (``common`` merged with the variant's own): the fields of
    ``vrlic.training.posttrain.PostTrainConfig`` that params.yaml may set; defaults from
    ``vrlic.training.defaults.POSTTRAIN``."""

    iters: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    crop: int = Field(ge=64, multiple_of=64)
    lr: float = Field(gt=0, lt=1)
    lr_decay_at: DecayAt
    seed: int = Field(ge=0)
    ckpt_every: int = Field(gt=0)
    moo: Literal[MOO_CHOICES] = D["moo"]
    normalization: Literal[NORMALIZATIONS] = D["normalization"]
    mgda_grads: Literal["params", "representation"] = D["mgda_grads"]
    weights: Optional[list[float]] = D["weights"]
    train: Literal[TRAIN_CHOICES] = D["train"]
    train_gains: bool = D["train_gains"]
    offsets: bool = D["offsets"]
    vr_hyper: bool = D["vr_hyper"]
    lr_gain: float = Field(default=D["lr_gain"], gt=0)
    aux_lr: float = Field(default=D["aux_lr"], gt=0)
    clip_max_norm: float = Field(default=D["clip_max_norm"], ge=0)
    cagrad_c: float = Field(default=D["cagrad_c"], ge=0)
    optimizer: Literal[OPTIMIZERS] = D["optimizer"]
    momentum: float = Field(default=D["momentum"], ge=0, lt=1)
    nesterov: bool = D["nesterov"]
    warmup: Literal[WARMUPS] = D["warmup"]
    warmup_frac: float = Field(default=D["warmup_frac"], ge=0, lt=1)
    alpha_ema: float = Field(default=D["alpha_ema"], ge=0, lt=1)
    alpha_every: int = Field(default=D["alpha_every"], gt=0)
    diagnostics: bool = D["diagnostics"]
    excess_eps: float = Field(default=D["excess_eps"], gt=0)
    ref_losses: Optional[list[float]] = D["ref_losses"]  # excess normalisation: L*_k (default: the fine-tuned anchors)


class Method(Strict):
    """The paper's three modifications, one switch each (``vrlic.pipeline.method``)."""

    moo: Literal[MOO_CHOICES] = "mgda"
    offsets: bool = True
    vr_hyper: bool = True


class VariantStage(Strict):
    common: dict[str, Any]
    variants: dict[str, dict[str, Any]] = Field(min_length=1)
    between: int = Field(ge=0)
    device: Device
    jobs: Jobs = 1  # runs side by side on the CPU, one thread each
    nproc_per_node: int = Field(ge=1)  # from params.yaml's top level (vrlic.pipeline.params.stage_params)
    # filled in from `method` by vrlic.pipeline.params.stage_params
    method: Method = Method()
    method_arm: Optional[str] = None
    left_out: dict[str, str] = {}

    @model_validator(mode="after")
    def _variants(self):
        _check_variants(self.variants, self.common, "variant")
        return self


class Solvers(Strict):
    """The solver study: its variants are post-training variants over stage 02's ``common``."""

    seeds: int = Field(default=2, ge=0)
    variants: dict[str, dict[str, Any]] = Field(min_length=1)
    common: dict[str, Any] = {}  # stage 02's, filled in by ``validate``

    @model_validator(mode="after")
    def _variants(self):
        _check_variants(self.variants, self.common, "solver")
        return self


class Figures(Strict):
    dense_steps: int = Field(default=25, ge=2)
    crop: int = Field(default=192, ge=16)
    visual_images: Union[int, list[str]] = 2
    visual_lambda: Optional[float] = Field(default=None, gt=0)
    published: bool = False
    min_effect: float = Field(default=0.5, ge=0)
    device: Device = "auto"


class Profile(Strict):
    architectures: list[Arch] = Field(min_length=1)
    lambdas: list[float] = Field(min_length=2)
    data: dict[str, Any] = {}
    base_models: dict[str, Any] = {}
    posttrain: dict[str, Any] = {}
    offsets: dict[str, Any] = {}
    hyperlatent: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    solvers: dict[str, Any] = {}

    @field_validator("lambdas")
    @classmethod
    def _lambdas(cls, v: list[float]) -> list[float]:
        if any(not (x > 0) for x in v):
            raise ValueError(f"every λ must be positive, got {v}")
        if sorted(v) != v or len(set(v)) != len(v):
            raise ValueError(f"λ must be strictly increasing, got {v}")
        return v


class ParamsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: Literal["mini", "mini3", "smoke", "paper"]
    paths: Paths
    method: Method = Method()
    nproc_per_node: int = Field(default=1, ge=1)
    data: dict[str, Any]
    base_models: dict[str, Any]
    posttrain: dict[str, Any]
    offsets: dict[str, Any]
    hyperlatent: dict[str, Any]
    figures: dict[str, Any] = {}
    solvers: dict[str, Any] = {}
    profiles: dict[Literal["mini", "mini3", "smoke", "paper"], Profile]


STAGE_SCHEMAS = {"base_models": BaseModels, "posttrain": VariantStage, "offsets": VariantStage,
                 "hyperlatent": VariantStage, "figures": Figures,
                 "solvers": Solvers}


class ParamsError(ValueError):
    """params.yaml has a mistake; the message names the key, the value and what is allowed."""


def _first(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        val = err.get("input")
        shown = "" if isinstance(val, (dict, list)) and len(str(val)) > 80 else f" (got {val!r})"
        lines.append(f"{loc}: {err['msg']}{shown}")
    return "; ".join(lines)


def validate(params: Mapping[str, Any], root: str | Path | None = None, stages=None) -> None:
    """Raise ``ParamsError`` on the first mistake in ``params`` (a loaded params.yaml)."""
    from vrlic.pipeline.params import stage_params

    try:
        ParamsFile(**params)
    except ValidationError as e:
        raise ParamsError(f"params.yaml: {_first(e)}") from None
    active = params["profile"]
    for profile in params["profiles"]:
        for stage in stages or STAGE_SCHEMAS:
            if stage not in params:
                continue
            try:
                p = stage_params(stage, params, profile)
                body = {k: v for k, v in p.items() if k not in ("profile", "architectures", "lambdas", "paths", "data")}
                if stage == "solvers":
                    body["common"] = stage_params("posttrain", params, profile)["common"]
                STAGE_SCHEMAS[stage](**body)
                if profile == active:  # another profile's folders are its user's business
                    Data(**p["data"])
            except ValidationError as e:
                raise ParamsError(f"params.yaml, profile {profile!r}, stage {stage!r}: {_first(e)}") from None
            except ValueError as e:
                raise ParamsError(f"params.yaml, profile {profile!r}, stage {stage!r}: {e}") from None
    if root is not None:  # folders the active profile needs must exist
        p = stage_params("base_models", params)
        d = p["data"]
        for key in ("train_dir", "val_dir"):
            if d.get(key) and d["source"] in ("kodak", "folders") and not (Path(root) / d[key]).exists():
                raise ParamsError(f"params.yaml, profile {p['profile']!r}: data.{key} {d[key]!r} does not exist")
