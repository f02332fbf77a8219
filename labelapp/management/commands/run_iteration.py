"""``python manage.py run_iteration --dataset NAME [--wait] [--batch-size N ...]``.

Launches an iteration from the shell (scripts, cron) through the same service and worker as the
launch page. With ``--wait`` it blocks until the iteration ends and prints, as its last line,
``{"iteration": ID, "status": "done"|"failed", "model_version": ID, "batch_size": N,
"seconds": S}``; the exit status is 0 only when the iteration is done. When no worker consumes
the queue, it says so at once and gives up after ``NO_WORKER_GRACE_S`` (the iteration is marked
failed, so that a retry or a new launch is not blocked by it).
"""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from labelapp.models import Dataset, Iteration
from labelapp.services.iterations import (
    PARAM_SPECS,
    IterationAlreadyActive,
    IterationParamsError,
    iteration_fail,
    iteration_launch,
    iteration_reap_stale,
)
from labelapp.workers import NO_WORKER_GRACE_S, no_worker_message

ENDED = (Iteration.Status.DONE, Iteration.Status.FAILED, Iteration.Status.CANCELLED)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
        raise ValueError(text)
    return lowered in {"1", "true", "yes", "on"}


class Command(BaseCommand):
    help = "Launch an iteration of the loop on a dataset; --wait blocks and prints a JSON summary."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        parser.add_argument("--wait", action="store_true", help="Block until it ends.")
        parser.add_argument("--timeout", type=float, default=6 * 3600, help="Seconds to wait.")
        for spec in PARAM_SPECS:
            parser.add_argument(
                "--" + spec.name.replace("_", "-"),
                dest=spec.name,
                type=_bool if spec.kind is bool else spec.kind,
                metavar="{" + ",".join(spec.choices) + "}" if spec.choices else None,
                default=None,
                help=f"{spec.help} Default {spec.default}.",
            )

    def handle(self, *args, dataset: str, wait: bool, timeout: float, **options) -> None:
        try:
            target = Dataset.objects.get(name=dataset)
        except Dataset.DoesNotExist as exc:
            raise CommandError(f"no dataset named {dataset!r}") from exc
        params = {s.name: options[s.name] for s in PARAM_SPECS if options.get(s.name) is not None}
        try:
            iteration = iteration_launch(dataset=target, params=params, via="command")
        except (IterationParamsError, IterationAlreadyActive) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"iteration #{iteration.number} (id {iteration.pk}) queued on {dataset}")
        if not wait:
            return
        t0 = time.monotonic()
        last = ""
        no_worker_since: float | None = None
        while True:
            iteration.refresh_from_db()
            line = f"{iteration.status} {iteration.stage} {iteration.progress_done}/" + str(
                iteration.progress_total
            )
            if line != last:
                self.stdout.write(f"  {time.monotonic() - t0:7.1f}s  {line}")
                last = line
            if iteration.status in ENDED:
                break
            if time.monotonic() - t0 > timeout:
                raise CommandError(f"iteration {iteration.pk} still {iteration.status} after wait")
            if iteration.status == Iteration.Status.QUEUED and (problem := no_worker_message()):
                if no_worker_since is None:
                    no_worker_since = time.monotonic()
                    self.stderr.write(f"{problem} Giving up in {NO_WORKER_GRACE_S:.0f} s.")
                elif time.monotonic() - no_worker_since > NO_WORKER_GRACE_S:
                    # Only if still queued: a worker that claimed it meanwhile runs it.
                    if iteration_fail(
                        iteration_id=iteration.pk, error=problem, from_status="queued"
                    ):
                        raise CommandError(problem)
            else:
                no_worker_since = None
            iteration_reap_stale(dataset=target)
            time.sleep(1.0)
        summary = {
            "iteration": iteration.pk,
            "status": iteration.status,
            "model_version": iteration.model_version_id,
            "batch_size": iteration.batch.count(),
            "seconds": round(time.monotonic() - t0, 2),
        }
        if iteration.status != Iteration.Status.DONE and iteration.error:
            self.stderr.write(iteration.error)
        self.stdout.write(json.dumps(summary))
        if iteration.status != Iteration.Status.DONE:
            raise SystemExit(1)
