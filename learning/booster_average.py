"""One LightGBM booster whose raw score is the mean of several boosters' raw scores.

A bagged model (:class:`learning.pu.TwoStepPU` with ``n_bags > 1``) stays one ``Booster``: its
trees are every bag's trees with their leaf values divided by the number of bags, so everything
downstream (``save_model`` in export bundles, ``pred_contrib`` on the case page, feature
importances, the rule export) reads it like any other model. LightGBM folds the initial score
(``boost_from_average``) into each model's first tree, so the merged raw score is exactly the
mean of the bags' raw scores.
"""

from __future__ import annotations

import re

import lightgbm as lgb

_TREES_END = "end of trees"
# Per-tree lines whose values add up to the tree's output: scaled by 1 / the number of boosters.
_SCALED_KEYS = ("leaf_value", "internal_value")


def _split_model(text: str) -> tuple[str, list[str], str]:
    """A model string as (header, tree blocks without their ``Tree=i`` line, trailer)."""
    trees_part, end, trailer = text.partition(_TREES_END)
    if not end:
        raise ValueError("the model string has no 'end of trees' line")
    header, *blocks = re.split(r"^Tree=\d+$", trees_part, flags=re.MULTILINE)
    if not blocks:
        raise ValueError("the model has no trees")
    return header.rstrip("\n"), [b.strip("\n") for b in blocks], trailer


def _scale_block(block: str, factor: float) -> str:
    lines = []
    for line in block.split("\n"):
        key, eq, values = line.partition("=")
        if eq and key in _SCALED_KEYS:
            line = f"{key}=" + " ".join(repr(float(v) * factor) for v in values.split())
        lines.append(line)
    return "\n".join(lines)


def average_boosters(boosters: list[lgb.Booster]) -> lgb.Booster:
    """One booster predicting the mean raw score (log-odds) of ``boosters``.

    The boosters must be single-output models over the same features in the same order.
    One booster is returned as it is.
    """
    if not boosters:
        raise ValueError("no booster to average")
    if len(boosters) == 1:
        return boosters[0]
    names = [tuple(b.feature_name()) for b in boosters]
    if len(set(names)) != 1:
        raise ValueError("the boosters were trained on different features")
    if any(b.num_model_per_iteration() != 1 for b in boosters):
        raise ValueError("only single-output boosters can be averaged")
    factor = 1.0 / len(boosters)
    header = trailer = ""
    trees: list[str] = []
    for i, booster in enumerate(boosters):
        text = booster.model_to_string()
        if "\nis_linear=1" in text:
            raise ValueError("linear trees cannot be averaged by their leaf values")
        head, blocks, tail = _split_model(text)
        if i == 0:
            header, trailer = head, tail
        trees.extend(_scale_block(block, factor) for block in blocks)
    # The byte sizes of the trees are an index for parallel loading; LightGBM parses without it.
    header = "\n".join(line for line in header.split("\n") if not line.startswith("tree_sizes="))
    body = "".join(f"Tree={i}\n{block}\n\n\n" for i, block in enumerate(trees))
    return lgb.Booster(model_str=f"{header}\n\n{body}{_TREES_END}{trailer}")
