"""Keyword habits of smplx/FLAME users, mapped onto HACK's names.

`HACK.forward` keeps its own names (`shape`, `expression`, `neck_pose`, ...). This
module resolves the one alias it accepts (`betas` for `shape`), explains keywords
that other models use (`jaw_pose`, `body_pose`, `expression_params`, ...), and
suggests the closest name (difflib) for anything else.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

JAW_EXPRESSIONS = ("jawOpen", "jawLeft", "jawRight", "jawForward")

# Keywords of other models (smplx, FLAME) and HACK's official symbols -> what to use here.
_HINTS: dict[str, str] = {
    "beta": "shape",
    "jaw_pose": "the jaw is driven by expression blendshapes: expression={'jawOpen': w} "
    "(also jawLeft, jawRight, jawForward) or action_units={'AU27': w}",
    "pose": "neck_pose",
    "body_pose": "neck_pose",
    "full_pose": "neck_pose",
    "theta": "neck_pose",
    "expression_params": "expression",
    "expressions": "expression",
    "exp": "expression",
    "bsw": "expression",
    "tau": "larynx_height",
    "alpha": "larynx_scale",
    "root_orient": "global_orient",
    "global_rot": "global_orient",
    "trans": "transl",
    "translation": "transl",
    "leye_pose": "the eyes are expression blendshapes (eyeLook*_L / eyeLook*_R)",
    "reye_pose": "the eyes are expression blendshapes (eyeLook*_L / eyeLook*_R)",
    "neck": "neck_pose",
}


class UnknownParameterError(TypeError, ValueError):
    """A keyword or a named weight that the model does not have (TypeError like Python's own
    unexpected-keyword error, ValueError like every other bad parameter)."""


def resolve_shape_alias(shape, betas):
    """`betas` (smplx's name) is an alias of `shape`; giving both is an error."""
    if betas is None:
        return shape
    if shape is not None:
        raise ValueError("give shape or its alias betas, not both")
    return betas


def suggestion(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest candidate, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        close = [lowered[c] for c in close]
    return f" (did you mean {close[0]}?)" if close else ""


def reject_unknown_keywords(
    unknown: Mapping[str, object],
    parameters: Sequence[str],
    expression_names: Sequence[str] = (),
    action_unit_names: Sequence[str] = (),
) -> None:
    """Raise UnknownParameterError for the first unknown keyword, with the best hint."""
    if not unknown:
        return
    name = next(iter(unknown))
    if name in _HINTS:
        hint = _HINTS[name]
        hint = f"use {hint}" if hint in parameters else hint
    elif name in expression_names:
        hint = f"{name} is an expression: use expression={{{name!r}: w}}"
    elif name in action_unit_names:
        hint = f"{name} is an action unit: use action_units={{{name!r}: w}}"
    else:
        close = difflib.get_close_matches(name, [*parameters, "betas", *_HINTS], n=1, cutoff=0.6)
        target = _HINTS.get(close[0], close[0]) if close else ""
        hint = f"known: {', '.join(parameters)}, betas"
        if target in parameters or target == "betas":
            hint += f" (did you mean {target}?)"
    raise UnknownParameterError(f"forward() got an unexpected keyword argument {name!r}; {hint}")


def check_names(what: str, given: Iterable[str], names: Sequence[str]) -> None:
    """Every key of a {name: weight} mapping must be one of `names`."""
    unknown = [str(k) for k in given if k not in names]
    if not unknown:
        return
    if not names:
        raise UnknownParameterError(f"unknown {what}(s) {', '.join(unknown)}; this model has none")
    hints = "".join(suggestion(k, names) for k in unknown[:1])
    raise UnknownParameterError(
        f"unknown {what}(s) {', '.join(unknown)}{hints}; this model has: {', '.join(names)}"
    )
