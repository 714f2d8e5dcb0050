"""The paper's three modifications as three switches: params.yaml's ``method``, read by every stage
that trains or evaluates.

Each of stages 02–04 adds one modification and trains *arms*: the method's own arm, which the next
stage continues from, and built-in contrast arms that switch the stage's modification off at the same
budget (the weighted sum, the decoder-only arm, fixed z). An arm inherits from ``method`` every switch
the stage has reached and changes only what it names. Switching a modification off in ``method``
removes it from the whole pipeline: no arm that would train or use it runs, and the method's arm of
each stage is then the one without it.
"""
from __future__ import annotations

from typing import Any, Mapping

SWITCHES = ("moo", "offsets", "vr_hyper")
# the modification of each switch, and the setting that leaves it out
MODIFICATION = {"moo": "MGDA", "offsets": "quantization-reconstruction offsets", "vr_hyper": "variable-rate hyper latent"}
OFF = {"moo": "weighted_sum", "offsets": False, "vr_hyper": False}
FULL_METHOD = {"moo": "mgda", "offsets": True, "vr_hyper": True}
# the switches each stage has reached (its own modification last); the others stay off there
STAGE_SWITCHES = {"posttrain": ("moo",), "offsets": ("moo", "offsets"), "hyperlatent": ("moo", "offsets", "vr_hyper")}


def adds(stage: str) -> str:
    """The switch of the modification ``stage`` adds."""
    return STAGE_SWITCHES[stage][-1]


def uses(settings: Mapping[str, Any], switch: str) -> bool:
    """Whether ``settings`` has the modification of ``switch`` (for ``moo``: MGDA itself)."""
    v = settings.get(switch, OFF[switch])
    return v == FULL_METHOD["moo"] if switch == "moo" else bool(v)


def check_method(method: Mapping[str, Any]) -> dict[str, Any]:
    """``method`` with every switch present (missing ones: the full method); unknown keys refused."""
    unknown = set(method) - set(SWITCHES)
    if unknown:
        raise ValueError(f"method: unknown switch(es) {sorted(unknown)}; the switches are {', '.join(SWITCHES)}")
    return {**FULL_METHOD, **method}


def resolve_arms(stage: str, method: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]]
                 ) -> tuple[dict[str, dict[str, Any]], str, dict[str, str]]:
    """The arms ``stage`` trains under ``method``: ({arm: settings with the inherited switches},
    the method's arm, {arm left out: why}).

    An arm that would use a modification ``method`` switches off is left out. The method's arm is
    the first whose switches all equal ``method``'s; stage 02 adds one named after ``method.moo``
    when no declared arm uses that solver (e.g. ``method.moo=cagrad``)."""
    method = check_method(method)
    inherited = {s: method[s] for s in STAGE_SWITCHES[stage]}
    arms: dict[str, dict[str, Any]] = {}
    left_out: dict[str, str] = {}
    for name, own in variants.items():
        settings = {**inherited, **own}
        against = [s for s in STAGE_SWITCHES[stage] if uses(settings, s) and not uses(method, s)]
        if against:
            left_out[name] = ", ".join(f"uses {MODIFICATION[s]}, switched off by method.{s}={method[s]}" for s in against)
            continue
        arms[name] = settings
    matching = [n for n, s in arms.items() if all(s.get(k) == method[k] for k in STAGE_SWITCHES[stage])]
    if not matching and stage == "posttrain":
        arms = {method["moo"]: dict(inherited), **arms}
        matching = [method["moo"]]
    if not matching:
        raise ValueError(f"stage {stage}: no arm of {sorted(variants)} has method's "
                         f"{', '.join(f'{k}={method[k]}' for k in STAGE_SWITCHES[stage])}; add one to {stage}.variants")
    return arms, matching[0], left_out
