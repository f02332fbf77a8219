"""Seed positives defined in the app: preview, apply, undo, ids lists, the command."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from labelapp.models import AuditEvent, BatchItem, Case, Dataset, PoolState
from labelapp.selectors.seeds import SeedSource, SeedSourceError, seed_ids_parse, seed_preview
from labelapp.services import seeds as seed_service
from labelapp.services.iterations import IterationParamsError, iteration_launch
from labelapp.services.labels import label_create
from labelapp.services.seeds import SeedUndoError, seeds_apply, seeds_undo
from learning.expressions import ExpressionError
from tests.labelapp.factories import make_batch, make_dataset

RULE = "amount > 100"  # cases c0013..c0019 (amount = 10 + 7.5 i)


@pytest.fixture
def pool(expert_user):
    """c0000-1 seeds; c0015-17 in a batch: c0015 skipped, c0016 confirmed, c0017 not confirmed."""
    dataset = make_dataset(n_cases=20, n_seed=2)
    cases = {c.case_id: c for c in dataset.cases.all()}
    items = make_batch(dataset, cases=[cases["c0015"], cases["c0016"], cases["c0017"]])
    for item, answer in zip(items, ["skipped", "confirmed", "not_confirmed"], strict=True):
        label_create(user=expert_user, case=item.case, answer=answer, batch_item=item)
    return dataset


def states(dataset: Dataset) -> dict[str, tuple[str, bool]]:
    return {
        c.case_id: (c.pool_state, c.seed_positive)
        for c in Case.objects.filter(dataset=dataset).order_by("row")
    }


def test_preview_counts_what_would_change_and_changes_nothing(pool):
    before = states(pool)
    preview = seed_preview(pool, SeedSource(rule=RULE))
    assert preview.n_matched == 7
    assert preview.n_change == 5  # c0013, c0014, c0018, c0019 (U) and c0015 (skipped)
    assert preview.n_already == 0
    assert sum(preview.not_changed.values()) == 2  # one confirmed, one not confirmed
    assert {c.case_id for c in preview.sample} == {"c0013", "c0014", "c0015", "c0018", "c0019"}
    assert preview.n_seeds_after == 7
    assert states(pool) == before


def test_apply_then_undo_restores_exactly(pool, admin_user):
    before = states(pool)
    result = seeds_apply(dataset=pool, source=SeedSource(rule=RULE), user=admin_user)
    assert result.n_changed == 5
    after = states(pool)
    for case_id in ("c0013", "c0014", "c0015", "c0018", "c0019"):
        assert after[case_id] == (PoolState.POSITIVE, True)
    assert after["c0016"] == before["c0016"] and after["c0017"] == before["c0017"]
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 7
    skipped_item = BatchItem.objects.get(case__case_id="c0015")
    assert skipped_item.status == BatchItem.Status.WITHDRAWN
    event = result.event
    assert event.verb == "seeds.mark" and event.actor == admin_user
    assert event.data["source"] == {"rule": RULE}
    assert sorted(c[1] for c in event.data["cases"]) == [
        "c0013",
        "c0014",
        "c0015",
        "c0018",
        "c0019",
    ]

    undo = seeds_undo(event=event, user=admin_user)
    assert undo.verb == "seeds.undo" and undo.data["n_restored"] == 5
    assert states(pool) == before
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 2
    assert BatchItem.objects.get(case__case_id="c0015").status == BatchItem.Status.SKIPPED
    with pytest.raises(SeedUndoError, match="undone already"):
        seeds_undo(event=event, user=admin_user)
    with pytest.raises(SeedUndoError):
        seeds_undo(event=undo, user=admin_user)


def test_undo_leaves_cases_changed_since_and_says_so(pool, admin_user):
    mark = seeds_apply(dataset=pool, source=SeedSource(rule=RULE), user=admin_user).event
    seeds_apply(dataset=pool, source=SeedSource(case_ids=("c0013",)), remove=True)
    undo = seeds_undo(event=mark, user=admin_user)
    assert undo.data["changed_since"] == ["c0013"] and undo.data["n_restored"] == 4
    assert states(pool)["c0013"] == (PoolState.UNLABELED, False)
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 2


def test_unmark_and_its_undo(pool, admin_user):
    result = seeds_apply(dataset=pool, source=SeedSource(case_ids=("c0000", "c0005")), remove=True)
    assert result.n_changed == 1 and result.preview.n_already == 1  # c0005 is no seed
    assert states(pool)["c0000"] == (PoolState.UNLABELED, False)
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 1
    seeds_undo(event=result.event, user=admin_user)
    assert states(pool)["c0000"] == (PoolState.POSITIVE, True)
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 2


def test_unknown_ids_change_nothing(pool):
    before, events = states(pool), AuditEvent.objects.count()
    with pytest.raises(SeedSourceError) as caught:
        seeds_apply(dataset=pool, source=SeedSource(case_ids=("c0013", "nope", "c0014", "gone")))
    assert caught.value.unknown_ids == ["nope", "gone"]
    assert "2 of 4 case ids are not in dataset toy: nope, gone" in str(caught.value)
    assert states(pool) == before and AuditEvent.objects.count() == events


def test_a_bad_rule_or_a_too_large_change_changes_nothing(pool, monkeypatch):
    before = states(pool)
    with pytest.raises(ExpressionError, match="unknown column"):
        seeds_apply(dataset=pool, source=SeedSource(rule="amont > 1"))
    monkeypatch.setattr(seed_service, "MAX_SEED_CHANGE", 3)
    with pytest.raises(SeedSourceError, match="at most 3"):
        seeds_apply(dataset=pool, source=SeedSource(rule=RULE))
    assert states(pool) == before


def test_nothing_to_change_records_nothing(pool):
    events = AuditEvent.objects.count()
    result = seeds_apply(dataset=pool, source=SeedSource(case_ids=("c0000", "c0016")))
    assert result.event is None and result.n_changed == 0 and result.preview.n_already == 1
    assert AuditEvent.objects.count() == events


def test_seeds_make_a_dataset_launchable(db, admin_user):
    dataset = make_dataset(n_seed=0)
    with pytest.raises(IterationParamsError, match="Seeds page"):
        iteration_launch(dataset=dataset, user=admin_user)
    seeds_apply(dataset=dataset, source=SeedSource(rule="amount >= 140"), user=admin_user)
    assert iteration_launch(dataset=dataset, user=admin_user).number == 1


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("a\nb\n\n a \nc\n", ["a", "b", "c"]),
        ("case_id\nx1\nx2\n", ["x1", "x2"]),
        ("note,case_id\nhello,x1\nbye,x2\n", ["x1", "x2"]),
        ("x1;7\nx2;8\n", ["x1", "x2"]),
        ("", []),
    ],
)
def test_id_lists(text, ids):
    assert seed_ids_parse(text) == ids


def test_command(pool, tmp_path, capsys):
    call_command("seeds", "--dataset", "toy", "--rule", RULE, "--dry-run")
    assert "7 cases matched; would mark 5" in capsys.readouterr().out
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 2
    call_command("seeds", "--dataset", "toy", "--rule", RULE)
    assert "marked 5" in capsys.readouterr().out
    ids = tmp_path / "ids.txt"
    ids.write_text("c0013\nc0014\n")
    call_command("seeds", "--dataset", "toy", "--ids", str(ids), "--remove")
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 5
    call_command("seeds", "--dataset", "toy", "--case", "c0003")
    assert states(pool)["c0003"] == (PoolState.POSITIVE, True)
    event = AuditEvent.objects.filter(verb="seeds.mark").latest("id")
    assert event.via == "command" and event.data["source"] == {"ids": 1}
    capsys.readouterr()
    call_command("seeds", "--dataset", "toy", "--undo", str(event.pk))
    assert "1 cases restored" in capsys.readouterr().out
    assert states(pool)["c0003"] == (PoolState.UNLABELED, False)
    with pytest.raises(CommandError, match="undone already"):
        call_command("seeds", "--dataset", "toy", "--undo", str(event.pk))
    with pytest.raises(CommandError, match="not in dataset toy"):
        call_command("seeds", "--dataset", "toy", "--case", "nope")
    with pytest.raises(CommandError, match="unknown column"):
        call_command("seeds", "--dataset", "toy", "--rule", "nope > 1")


# --- pages ------------------------------------------------------------------------------------


def test_seeds_page_preview_apply_undo(pool, admin_client):
    from django.urls import reverse

    url = reverse("seeds", args=["toy"])
    page = admin_client.get(url, {"rule": RULE}).content.decode()
    assert 'id="n-matched">7<' in page and 'id="n-change">5<' in page
    assert reverse("case-detail", args=[Case.objects.get(case_id="c0013").pk]) in page
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 2  # a preview changes nothing

    bad = admin_client.get(url, {"rule": "amount.real > 1"}).content.decode()
    assert "at position 7: attribute access" in bad and 'id="apply"' not in bad

    done = admin_client.post(reverse("seeds-apply", args=["toy"]), {"rule": RULE}, follow=True)
    assert "5 cases marked as seed positives" in done.content.decode()
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 7
    event = AuditEvent.objects.get(verb="seeds.mark")
    assert f'data-undo="{event.pk}"' in done.content.decode()

    undone = admin_client.post(reverse("seeds-undo", args=["toy", event.pk]), follow=True)
    assert "5 cases restored" in undone.content.decode()
    assert "undone by alice-admin" in undone.content.decode()
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 2


def test_seeds_page_ids_upload(pool, admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    url = reverse("seeds", args=["toy"])
    upload = SimpleUploadedFile("ids.csv", b"case_id,why\nc0013,list\nzzz,list\n")
    page = admin_client.post(url, {"ids_file": upload}).content.decode()
    assert "1 of 2 case ids are not in dataset toy: zzz" in page and 'id="apply"' not in page
    upload = SimpleUploadedFile("ids.txt", b"c0013\nc0014\n")
    page = admin_client.post(url, {"ids_file": upload}).content.decode()
    assert 'id="n-change">2<' in page
    admin_client.post(reverse("seeds-apply", args=["toy"]), {"ids": "c0013\nc0014"})
    assert states(pool)["c0014"] == (PoolState.POSITIVE, True)


def test_case_page_mark_and_unmark(pool, admin_client, expert_client):
    from django.urls import reverse

    case = Case.objects.get(case_id="c0004")
    page = admin_client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert 'id="btn-seed"' in page
    done = admin_client.post(reverse("case-seed", args=[case.pk]), follow=True).content.decode()
    assert "is now a seed positive" in done and 'id="btn-unseed"' in done
    admin_client.post(reverse("case-seed", args=[case.pk]), {"remove": "1"})
    assert states(pool)["c0004"] == (PoolState.UNLABELED, False)
    assert AuditEvent.objects.filter(verb__in=["seeds.mark", "seeds.unmark"]).count() == 2
    # Experts neither see nor use any of it.
    assert expert_client.post(reverse("case-seed", args=[case.pk])).status_code == 403
    assert expert_client.get(reverse("seeds", args=["toy"])).status_code == 403


def test_launch_refusal_points_to_the_seeds_page(db, admin_client):
    from django.urls import reverse

    from labelapp.services.iterations import default_params

    make_dataset(n_seed=0)
    params = {k: v for k, v in default_params().items() if v is not False}
    page = admin_client.post(reverse("iteration-launch", args=["toy"]), params).content.decode()
    assert "needs at least 2" in page and reverse("seeds", args=["toy"]) in page


# --- API --------------------------------------------------------------------------------------


def test_api_preview_apply_list_undo(pool, admin_client, expert_client):
    from django.urls import reverse

    preview = admin_client.post(
        reverse("api-seeds-preview", args=["toy"]), {"rule": RULE}, content_type="application/json"
    ).json()
    assert preview["n_change"] == 5 and len(preview["sample"]) == 5
    bad = admin_client.post(
        reverse("api-seeds", args=["toy"]),
        {"case_ids": ["c0013", "nope"]},
        content_type="application/json",
    )
    assert bad.status_code == 400 and bad.json()["errors"]["unknown_ids"] == ["nope"]
    both = admin_client.post(
        reverse("api-seeds", args=["toy"]),
        {"rule": RULE, "case": 1},
        content_type="application/json",
    )
    assert both.status_code == 400 and "exactly one" in both.json()["detail"]
    rule = admin_client.post(
        reverse("api-seeds", args=["toy"]), {"rule": "amount ** 2"}, content_type="application/json"
    )
    assert rule.status_code == 400 and "at position 9" in rule.json()["detail"]

    change = admin_client.post(
        reverse("api-seeds", args=["toy"]), {"rule": RULE}, content_type="application/json"
    ).json()
    assert change["verb"] == "seeds.mark" and change["data"]["n_changed"] == 5
    same = admin_client.post(
        reverse("api-seeds", args=["toy"]), {"rule": RULE}, content_type="application/json"
    )
    assert same.status_code == 204 and not same.content  # nothing left to change: no record
    listed = admin_client.get(reverse("api-seeds", args=["toy"])).json()
    assert [c["id"] for c in listed["results"]] == [change["id"]]
    undo = admin_client.post(reverse("api-seeds-undo", args=[change["id"]]))
    assert undo.status_code == 200 and undo.json()["data"]["n_restored"] == 5
    again = admin_client.post(reverse("api-seeds-undo", args=[change["id"]]))
    assert again.status_code == 409
    assert Dataset.objects.get(pk=pool.pk).n_seed_positive == 2
    assert expert_client.get(reverse("api-seeds", args=["toy"])).status_code == 403


def test_a_seed_held_as_an_open_hidden_check_is_not_unmarked(pool, admin_user):
    from labelapp.selectors.seeds import OPEN_CHECK_REASON
    from tests.labelapp.factories import make_iteration

    seed = Case.objects.get(case_id="c0000")
    check = BatchItem.objects.create(
        iteration=make_iteration(pool), case=seed, position=9, is_check=True
    )
    source = SeedSource(case_ids=("c0000", "c0001"))
    preview = seed_preview(pool, source, remove=True)
    assert preview.n_change == 1 and preview.not_changed == {OPEN_CHECK_REASON: 1}
    result = seeds_apply(dataset=pool, source=source, remove=True, user=admin_user)
    assert [c[1] for c in result.event.data["cases"]] == ["c0001"]
    assert states(pool)["c0000"] == (PoolState.POSITIVE, True)
    check.status = BatchItem.Status.ANSWERED  # once answered, it may be unmarked
    check.save()
    assert seeds_apply(dataset=pool, source=source, remove=True).n_changed == 1
