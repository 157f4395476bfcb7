"""The two config decisions the CIESS method and its trainer must read the same way."""

from recbole_lightemb.budget import check_fraction
from recbole_lightemb.plan import reused_plan


def budget_fraction(config):
    """``emb_budget`` or its alias ``ciess_budget`` (``None`` when neither is set); both must agree."""
    common, alias = check_fraction(config, "emb_budget"), check_fraction(config, "ciess_budget")
    if common is not None and alias is not None and common != alias:
        raise ValueError(f"emb_budget={common!r} and ciess_budget={alias!r} disagree; set one of them")
    return common if common is not None else alias


def saved_plan_path(config):
    """A saved plan to reuse (``ciess_plan`` or ``emb_plan``): its presence skips the search."""
    return reused_plan(config, "ciess")
