"""One training, top to bottom: claim the run folder → build → train → finish. It owns a run folder, trains it to
completion, and resumes from where a previous start stopped.

Each stage has its module: the claim in job/rundir/claim.py, the build in setup.py, the steps in training_loop.py (on
the schedule of schedule.py), the end in finish.py. Every refusal of bad input comes from the claim, before
TensorFlow loads: this module imports no TensorFlow itself, and the stages after the claim only once it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from job import signals
from job.analysis.report import kept_current
from job.config import TrainConfig
from job.errors import Interrupted, TrainingDiverged
from job.loop.log_lines import log_progress
from job.rundir.claim import claimed
from job.rundir.timings import Timings

if TYPE_CHECKING:
    from job.loop.log_lines import Progress
    from job.networks.gan import Gan

log = logging.getLogger(__name__)

__all__ = ["Interrupted", "TrainingDiverged", "train"]


def train(
    config: TrainConfig,
    force: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_advance: Callable[[int], None] | None = None,
) -> Gan:
    """Train the run in `config.out` to `config.steps`, resuming from its newest checkpoint; returns the state.
    `on_progress` hears of each log interval (by default it logs a line), `on_advance` of the step reached after
    each compiled call, about every CALL_SECONDS (a terminal's progress bar moves with it).

    On SIGTERM or SIGINT (job/signals.py) training ends after the compiled call under way, writes a checkpoint and
    raises Interrupted. A new run that fails before its first checkpoint leaves no folder behind. A start that
    finishes the run (trains to the end, or exports what an interrupted start trained) logs where its time went and
    adds a `timings` record to metrics.jsonl.
    """
    with claimed(config, force) as (run, data):
        from job.loop import finish, setup, training_loop  # noqa: PLC0415 (TensorFlow loads here)

        timings = Timings()
        training = setup.set_up(config, run, data, force, timings)
        gan, start = training.gan, training.start
        with kept_current(run.root, training.device, interrupted=Interrupted) as update_report:  # report.html
            if start >= config.steps and finish.already_exported(run, start):
                log.info("run in %s already finished at step %d: nothing to do", run.root, start)
                return gan
            if start < config.steps:
                loop = training_loop.TrainingLoop(
                    config,
                    run,
                    training,
                    training.compiled_calls(config),
                    on_progress or log_progress,
                    on_advance or (lambda step: None),
                    update_report,
                    timings,
                )
                timings.start_up_ends()
                with signals.deferred() as stop:
                    loop.train_from(start, stop)
            else:  # the steps are done, the export is not (a start stopped while exporting)
                timings.start_up_ends()
            with timings.part("export"):
                finish.save_final_models(gan, config, data, run)
            signals.work_done()  # the run is done: a signal now leaves its bookkeeping whole and its report finished
            finish.record_timings(run, gan, start, timings)
    return gan
