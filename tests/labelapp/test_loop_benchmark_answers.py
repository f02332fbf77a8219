"""``benchmark_speed --part loop`` with ``LOOP_BENCH_ANSWER``: the open batch answered from the
truth before the timed iteration (an iteration a user launches after a batch)."""

from __future__ import annotations

from labelapp.benchmarks.loop import answer_current_batch
from labelapp.models import Case, PoolState
from tests.labelapp.loop_data import make_loop_dataset
from tests.labelapp.version_data import loop_in_process, run_iteration


def test_the_open_batch_is_answered_from_the_truth(
    transactional_db, tmp_path, settings, expert_user
):
    loop_in_process(settings, tmp_path)
    dataset, cases = make_loop_dataset("bench-answers", tmp_path / "snapshots", n_cases=1500)
    version = run_iteration(dataset)
    truth = cases.set_index("case_id")["label"]
    items = list(version.iteration.batch.filter(is_check=False).select_related("case"))
    done = answer_current_batch(dataset, tmp_path / "snapshots" / str(dataset.pk), expert_user)
    confirmed = sum(bool(truth[item.case.case_id]) for item in items)
    assert done == {"iteration": 1, "answered": len(items), "confirmed": confirmed}
    states = dict(
        Case.objects.filter(pk__in=[i.case_id for i in items]).values_list("case_id", "pool_state")
    )
    for case_id, state in states.items():
        want = PoolState.CONFIRMED if truth[case_id] else PoolState.NOT_CONFIRMED
        assert state == want
    # Nothing open is left: a second call answers nothing.
    again = answer_current_batch(dataset, tmp_path / "snapshots" / str(dataset.pk), expert_user)
    assert again["answered"] == 0
