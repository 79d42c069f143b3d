"""``/api/v1/experiments/{ref}/interleaving``: the preference between an interleaving experiment's rankers
(:func:`abcore.analysis.interleaving.analyze_interleaving`, the same numbers as ``abcore interleaving``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from abcore.api.deps import Reader, SessionDep, StateDep
from abcore.api.errors import responses
from abcore.api.experiments import Ref

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])


@router.get(
    "/{ref}/interleaving",
    responses=responses(401, 403, 404, 422, 429),
    summary="Interleaving: preference per ranker pair (wins, losses, ties, share, CI, sign test) and the verdict",
)
def interleaving(
    ref: Ref,
    key: Reader,
    session: SessionDep,
    state: StateDep,
    correction: Annotated[Literal["holm", "bonferroni", "fdr_bh", "none"], Query()] = "holm",
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
    end: datetime | None = None,
    sequential: bool = False,
) -> dict[str, Any]:
    """One object per ranker pair and the verdict; 422 for an experiment that is not an interleaving one."""
    from abcore.analysis.interleaving import analyze_interleaving, results_dict

    state.assigner.flush()
    return results_dict(analyze_interleaving(ref, session=session, alpha=alpha, correction=correction, end=end,
                                            sequential=sequential))
