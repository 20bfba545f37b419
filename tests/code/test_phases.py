"""mnist_job/core/phases.py: phases timed as blocks, read back from MLflow's metrics, told as one line."""

from __future__ import annotations

import time

from mnist_job.core.phases import WORKER_PHASES, PhaseClock


def test_a_block_is_timed_and_repeats_add_up():
    clock = PhaseClock()
    for _ in range(2):
        with clock.phase("checkpoint"):
            time.sleep(0.01)
    with clock.phase("epoch", step=3):
        pass
    assert 0.02 <= clock.seconds("checkpoint") < 1.0
    assert [(key, step) for key, _, step in clock.metrics()] == [("phase_checkpoint_s", 0), ("phase_epoch_s", 3)]


def test_a_failing_phase_is_still_timed():
    clock = PhaseClock()
    try:
        with clock.phase("fit"):
            raise RuntimeError("worker died")
    except RuntimeError:
        pass
    assert [key for key, _, _ in clock.metrics()] == ["phase_fit_s"]


def test_the_line_nests_what_rank_0_timed_inside_fit_with_the_rest():
    driver, worker = PhaseClock(), PhaseClock()
    for name, seconds in (("checks", 0.42), ("ray_start", 4.1), ("fit", 40.0), ("shutdown", 1.2)):
        driver.add(name, seconds)
    worker.add("workers_ready", 6.0)
    worker.add("epoch", 15.0, step=1)
    worker.add("epoch", 14.0, step=2)
    assert driver.describe({"fit": worker}) == ("checks 0.4 s, ray start 4.1 s, fit 40.0 s (workers ready 6.0 s, "
                                                "epoch 1 15.0 s, epoch 2 14.0 s, other 5.0 s), shutdown 1.2 s")


def test_many_epochs_are_one_total():
    clock = PhaseClock()
    for epoch in range(1, 21):
        clock.add("epoch", 2.0, step=epoch)
    assert clock.describe() == "epochs 1-20 40.0 s (2.0 s each)"


def test_read_back_from_mlflow_in_the_order_of_a_run():
    logged = PhaseClock()
    logged.add("register", 0.3)
    logged.add("epoch", 2.0, step=2)
    logged.add("data_ready", 0.2)
    logged.add("epoch", 1.0, step=1)
    entries = [*reversed(logged.metrics()), ("test_accuracy", 0.99, 2), ("phase_unknown_s", 1.0, 0)]
    back = PhaseClock.from_metrics(entries, WORKER_PHASES)
    assert back.describe() == "data ready 0.2 s, epoch 1 1.0 s, epoch 2 2.0 s, register 0.3 s, unknown 1.0 s"
