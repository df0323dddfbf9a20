"""The tests' Ray clean-up claims what this test run started, and not a cluster that another command
of the same terminal session started (`make run &` then `make test`)."""

from distmeta.jobs.processes import Process
from tests.ray_processes import started_by_this_run

PYTEST, SESSION, ELSEWHERE = 100, 7, 3


def process(pid: int, parent: int, command: str, session: int = SESSION) -> Process:
    return Process(pid, parent, session, started=pid, command=command)


def table(*found: Process) -> dict[int, Process]:
    shell = process(10, 1, "-bash", session=SESSION)
    return {p.pid: p for p in (shell, process(PYTEST, 10, "python -m pytest"), *found)}


def test_a_cluster_that_pytest_started_through_a_distmeta_subprocess_is_the_runs():
    driver = process(200, PYTEST, "python .venv/bin/distmeta train")
    gcs = process(201, 200, "/site-packages/ray/core/src/ray/gcs/gcs_server")
    worker = process(202, 203, "ray::IDLE")
    raylet = process(203, 200, "/site-packages/ray/core/src/ray/raylet/raylet")
    everyone = table(driver, gcs, worker, raylet)
    assert all(started_by_this_run(p, everyone, PYTEST) for p in (gcs, worker, raylet))


def test_what_a_killed_driver_left_behind_is_the_runs():
    orphan_raylet = process(301, 1, "/site-packages/ray/core/src/ray/raylet/raylet")
    orphan_worker = process(302, 301, "ray::RayTrainWorker")
    everyone = table(orphan_raylet, orphan_worker, process(1, 0, "init", session=ELSEWHERE))
    assert started_by_this_run(orphan_raylet, everyone, PYTEST)
    assert started_by_this_run(orphan_worker, everyone, PYTEST)


def test_a_cluster_that_another_command_of_the_same_session_started_is_left_alone():
    make = process(400, 10, "make run")
    driver = process(401, 400, "python .venv/bin/distmeta train")
    gcs = process(402, 401, "/site-packages/ray/core/src/ray/gcs/gcs_server")
    worker = process(403, 404, "ray::TrainController.run")
    raylet = process(404, 401, "/site-packages/ray/core/src/ray/raylet/raylet")
    everyone = table(make, driver, gcs, worker, raylet)
    assert not any(started_by_this_run(p, everyone, PYTEST) for p in (gcs, worker, raylet))
