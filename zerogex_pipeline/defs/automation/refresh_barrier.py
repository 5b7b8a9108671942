"""The intraday refresh's run barrier: a levels run waits, before it loads any input, for its chain run.

The refresh sensor launches the chain + surface run and the levels run of a captured snapshot together, so the
levels run's start-up (about 6 s of interpreter and code-location loading on this 2-core machine) overlaps the
chain run instead of following it. Dagster has no run-to-run dependency, and an asset reads its inputs before
its body runs, so the wait sits in a resource: resources are initialized before the first step loads anything.

A run tagged ``zerogex/after_step=<step>`` waits until the newest run tagged ``zerogex/refresh_step=<step>``
succeeded, and fails in one line (no retry) when that run failed or was canceled, or has not succeeded within
``timeout_s``. A run without the tag (every other run) passes at once.
"""

from __future__ import annotations

import time

import dagster as dg
from pydantic import Field, PrivateAttr

from zerogex_pipeline.defs.automation.intraday_refresh import AFTER_STEP_TAG, STEP_TAG

ENDED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class RefreshBarrier(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Holds a run tagged ``zerogex/after_step`` until the run of that refresh step has succeeded."""

    timeout_s: float = Field(default=600.0, description="Longest wait for the awaited run, in seconds.")
    poll_s: float = Field(default=0.1, description="Seconds between looks at the awaited run's status.")
    _problem: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        step = run.tags.get(AFTER_STEP_TAG) if run is not None else None
        if not step or context.instance is None:
            return
        started = time.monotonic()
        while True:
            runs = context.instance.get_runs(filters=dg.RunsFilter(tags={STEP_TAG: step}), limit=1)
            status = runs[0].status if runs else None
            if status == dg.DagsterRunStatus.SUCCESS:
                if context.log is not None:
                    context.log.info(f"refresh step {step} succeeded; waited {time.monotonic() - started:.1f} s")
                return
            if status in ENDED:
                self._problem = (f"refresh step {step} ended {status.value.lower()} (run {runs[0].run_id[:8]}): "
                                 "this run does not refresh from it")
                return
            if time.monotonic() - started > self.timeout_s:
                self._problem = (f"refresh step {step} has not succeeded within {self.timeout_s:.0f} s "
                                 f"({'no run yet' if status is None else status.value.lower()})")
                return
            time.sleep(self.poll_s)

    def require_awaited_run(self) -> None:
        """Fail the step in one line (no retry) when the awaited run did not succeed.

        Raises:
            dg.Failure: the awaited run failed, was canceled, or did not succeed in time.
        """
        if self._problem is not None:
            raise dg.Failure(description=self._problem, allow_retries=False)
