"""The data model: datasets and their cases/events, labels, iterations, model versions, audit.

Bulk numeric data (all features of 1M+ cases, embeddings, models) lives in columnar files under
``ARTIFACTS_DIR``; the database holds identities, pool state, scores, labels and history.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, FilteredRelation, FloatField, Q, Subquery, Value


class PoolState(models.TextChoices):
    """Where a case stands in the PU loop (mirrors ``learning.pool``)."""

    POSITIVE = "P", "Seed positive"
    UNLABELED = "U", "Unlabeled"
    SHOWN = "shown", "In a batch"
    CONFIRMED = "confirmed", "Confirmed positive"
    NOT_CONFIRMED = "not_confirmed", "Not confirmed"
    SKIPPED = "skipped", "Skipped"


class Dataset(models.Model):
    class Status(models.TextChoices):
        IMPORTING = "importing", "Importing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    schema = models.JSONField(default=dict, blank=True)
    feature_columns = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IMPORTING)
    import_report = models.JSONField(default=dict, blank=True)
    n_cases = models.PositiveIntegerField(default=0)
    n_events = models.PositiveIntegerField(default=0)
    n_seed_positive = models.PositiveIntegerField(default=0)
    snapshot_dir = models.CharField(max_length=500, blank=True)
    current_model = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The version whose scores lists and filters show (its CaseScore rows are all there): it
    # follows current_model once that version's rows are loaded, in the statement that swaps them
    # in (labelapp.services.case_scores).
    scores_model = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Hidden checks of expert recall: this share of each new batch is seed positives that the
    # experts cannot tell apart from the other cases (0 = off; see labelapp.services.checks).
    hidden_check_share = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.2)],
        help_text="Share (0 to 0.2) of each batch given to hidden checks of expert recall.",
    )

    @property
    def case_scores_pending(self) -> bool:
        """True while lists and filters still show an earlier version's scores than the current."""
        return self.current_model_id is not None and self.scores_model_id != self.current_model_id

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CaseQuerySet(models.QuerySet):
    def with_scores(self, version_id: int | None) -> CaseQuerySet:
        """Annotate ``score`` and ``score_percentile`` from ``version_id``'s scores (None: none).

        A join on the version's :class:`CaseScore` rows, so ``score`` filters and orders like a
        column (``filter(score__gte=...)``, ``order_by(F("score").desc(nulls_last=True))``, which
        the rows' index serves). A version's rows cover all its dataset's cases (they are loaded
        all at once), so cases without one are left out: the join is an inner one, which lets
        PostgreSQL walk that index.
        """
        if version_id is None:
            return self.annotate(
                score=Value(None, output_field=FloatField()),
                score_percentile=Value(None, output_field=FloatField()),
            )
        return self.annotate(
            shown_score=FilteredRelation("scores", condition=Q(scores__version_id=version_id)),
            score=F("shown_score__score"),
            score_percentile=F("shown_score__percentile"),
        ).filter(score__isnull=False)

    def with_shown_scores(self, dataset: Dataset) -> CaseQuerySet:
        """:meth:`with_scores` of the version whose scores ``dataset`` shows."""
        return self.with_scores(dataset.scores_model_id)


class Case(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="cases")
    row = models.PositiveIntegerField(help_text="Position in the dataset's feature snapshot.")
    case_id = models.CharField(max_length=200)
    entity_id = models.CharField(max_length=200, blank=True)
    ts = models.DateTimeField(null=True, blank=True)
    seed_positive = models.BooleanField(default=False)
    pool_state = models.CharField(
        max_length=20, choices=PoolState.choices, default=PoolState.UNLABELED
    )
    features = models.JSONField(default=dict, blank=True)

    objects = CaseQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "case_id"], name="uniq_case_id"),
            models.UniqueConstraint(fields=["dataset", "row"], name="uniq_case_row"),
        ]
        indexes = [
            models.Index(fields=["dataset", "pool_state"]),
            models.Index(fields=["dataset", "entity_id", "ts"]),
        ]

    def __str__(self) -> str:
        return self.case_id

    # The shown version's score and its percentile among all the dataset's cases: annotated by
    # ``Case.objects.with_scores(version_id)`` for lists, else read on first use (one query).
    @property
    def score(self) -> float | None:
        return self._shown_score()[0]

    @score.setter
    def score(self, value: float | None) -> None:
        self.__dict__["_score"] = value

    @property
    def score_percentile(self) -> float | None:
        return self._shown_score()[1]

    @score_percentile.setter
    def score_percentile(self, value: float | None) -> None:
        self.__dict__["_score_percentile"] = value

    def _shown_score(self) -> tuple[float | None, float | None]:
        cached = self.__dict__
        if "_score" not in cached or "_score_percentile" not in cached:
            shown = Dataset.objects.filter(pk=self.dataset_id).values("scores_model_id")
            found = (
                CaseScore.objects.filter(case_id=self.pk, version_id=Subquery(shown))
                .values_list("score", "percentile")
                .first()
            )
            cached["_score"], cached["_score_percentile"] = found or (None, None)
        return cached["_score"], cached["_score_percentile"]


class Event(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="events")
    entity_id = models.CharField(max_length=200)
    ts = models.DateTimeField()
    fields = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["dataset", "entity_id", "ts"])]


class PatternTag(models.Model):
    """A cash-out pattern of the taxonomy that admins edit (hierarchical through ``parent``)."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Iteration(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="iterations")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    stage = models.CharField(max_length=40, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    model_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    task_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stage_started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="uniq_iteration_number"),
            # One running iteration per dataset, enforced by the database itself.
            models.UniqueConstraint(
                fields=["dataset"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_iteration_per_dataset",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} #{self.number}"


class ModelVersion(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="model_versions")
    iteration = models.ForeignKey(
        Iteration, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    artifact_dir = models.CharField(max_length=500)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    data_snapshot = models.JSONField(
        default=dict, blank=True, help_text="Counts and label ids the model was trained on."
    )
    feature_names = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.pk}"


class CaseScore(models.Model):
    """One case's score under one model version, copied from the version's ``scores.npy``.

    Lists, filters and the explorer read the scores of ``Dataset.scores_model`` from here. A
    version's rows are loaded in one transaction (``COPY`` on PostgreSQL) that also moves
    ``scores_model`` to it: the swap is one statement and the case rows are never rewritten.
    No database foreign keys: the rows are written in bulk and removed with their dataset or
    when they are neither shown nor current (labelapp.services.case_scores).
    """

    pk = models.CompositePrimaryKey("version_id", "case_id")
    version = models.ForeignKey(
        ModelVersion,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # the primary key leads with it
        related_name="+",
    )
    case = models.ForeignKey(
        Case,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # read through the primary key, with the version
        related_name="scores",
    )
    score = models.FloatField()
    percentile = models.FloatField(help_text="Share (0-100] of the cases scoring at most this.")

    # The explorer's keyset index (version, score DESC NULLS LAST, case DESC) is made by
    # migration 0007, per database, as migration 0005 does for the case table.


class BatchItem(models.Model):
    """A case selected into an iteration's batch, with why it was chosen and who holds it."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ANSWERED = "answered", "Answered"
        SKIPPED = "skipped", "Skipped"
        WITHDRAWN = "withdrawn", "Withdrawn"

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="batch")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="batch_items")
    position = models.PositiveIntegerField(default=0)
    score = models.FloatField(null=True, blank=True)
    uncertainty = models.FloatField(null=True, blank=True)
    cluster = models.IntegerField(null=True, blank=True)
    rank_in_cluster = models.IntegerField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    required_answers = models.PositiveSmallIntegerField(
        default=1, help_text="2 for double labeling (agreement between experts)."
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    is_check = models.BooleanField(
        default=False,
        help_text="A hidden check: a seed positive shown as any other case; its answers "
        "measure the expert's recall and never change the pool.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["iteration", "position"]
        constraints = [
            models.UniqueConstraint(fields=["iteration", "case"], name="uniq_batch_case"),
        ]
        indexes = [models.Index(fields=["status", "lease_expires_at"])]


class LabelQuerySet(models.QuerySet):
    def without_checks(self) -> LabelQuerySet:
        """Answers about the cases: those given to hidden checks left out (they measure the
        expert and train nothing)."""
        return self.exclude(batch_item__is_check=True)


class Label(models.Model):
    """One answer of an expert. History is append-only: an undo is a new row, never a delete."""

    objects = LabelQuerySet.as_manager()

    class Answer(models.TextChoices):
        CONFIRMED = "confirmed", "Confirmed cash-out"
        NOT_CONFIRMED = "not_confirmed", "Not confirmed"
        SKIPPED = "skipped", "Skipped"
        UNDONE = "undone", "Undone"

    class Via(models.TextChoices):
        PAGE = "page", "Page"
        API = "api", "API"
        REVIEW = "review", "Second review"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="labels")
    batch_item = models.ForeignKey(
        BatchItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="labels"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    answer = models.CharField(max_length=20, choices=Answer.choices)
    previous_answer = models.CharField(max_length=20, blank=True)
    undoes = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by"
    )
    pattern = models.ForeignKey(PatternTag, null=True, blank=True, on_delete=models.SET_NULL)
    comment = models.TextField(blank=True)
    via = models.CharField(max_length=10, choices=Via.choices, default=Via.PAGE)
    review_round = models.PositiveSmallIntegerField(
        default=1, help_text="1 for the first answer, 2+ for second looks (double labeling, audit)."
    )
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    seconds_spent = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["case", "created_at"]), models.Index(fields=["user"])]


class AuditEvent(models.Model):
    """Who did what, when: label events, imports, launches, promotions, downloads."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    verb = models.CharField(max_length=50)
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.CASCADE)
    target_type = models.CharField(max_length=50, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    data = models.JSONField(default=dict, blank=True)
    via = models.CharField(max_length=10, default="page")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["verb", "created_at"])]


class NoiseFlag(models.Model):
    """A positive (seed or expert answer) the label-noise audit found suspicious, with why."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SENT = "sent", "Sent for a second look"
        REVIEWED = "reviewed", "Reviewed"
        DISMISSED = "dismissed", "Dismissed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="noise_flags")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="noise_flags")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=10, help_text="seed (a rule's positive) or answer.")
    methods = models.JSONField(default=list, blank=True)
    reasons = models.JSONField(default=list, blank=True)
    suspicion = models.FloatField(default=0.0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    review_item = models.ForeignKey(
        BatchItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="noise_flags"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-suspicion", "id"]
        indexes = [models.Index(fields=["dataset", "status"])]

    def __str__(self) -> str:
        return f"flag on {self.case_id} ({', '.join(self.methods)})"
