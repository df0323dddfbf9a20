"""One interface for a run's files in a local folder and in a bucket (moto's S3 server on loopback)."""

import pickle

import pyarrow.fs
import pytest

from distmeta.storage import UnknownStorageError, location, ray_storage
from tests.s3_server import s3_server, writer_environment


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server, writer_environment(server):
        yield server


def exercise(run):
    """What a run does with its folder, returning what a reader then sees."""
    run.mkdir()
    (run / "checkpoints" / "step_00000001.pt").write_with(lambda file: file.write(b"one"))
    (run / "checkpoints" / "step_00000002.pt").write_bytes(b"two")
    (run / "metrics.jsonl").append_text('{"step": 1}\n')
    (run / "metrics.jsonl").append_text('{"step": 2}\n')
    (run / "summary.json").write_text("{}")
    (run / "summary.json").unlink()
    (run / "summary.json").unlink()  # gone already: nothing to do
    return {
        "checkpoints": sorted(p.name for p in run.glob("checkpoints/step_*.pt")),
        "metrics": (run / "metrics.jsonl").read_text(),
        "after the first line": (run / "metrics.jsonl").read_from(12),
        "size": (run / "metrics.jsonl").size(),
        "summary exists": (run / "summary.json").exists(),
        "kinds": ((run / "checkpoints").is_dir(), (run / "metrics.jsonl").is_file(), run.is_file()),
        "children": sorted(child.name for child in run.children()),
        "nothing there": (run / "never-written").children(),
    }


EXPECTED = {
    "checkpoints": ["step_00000001.pt", "step_00000002.pt"],
    "metrics": '{"step": 1}\n{"step": 2}\n',
    "after the first line": b'{"step": 2}\n',
    "size": 24,
    "summary exists": False,
    "kinds": (True, True, False),
    "children": ["checkpoints", "metrics.jsonl"],
    "nothing there": [],
}


def test_a_local_folder_is_written_read_and_listed_through_its_location(tmp_path):
    run = location(tmp_path / "runs" / "one")
    assert run.is_local and run.local_path == tmp_path / "runs" / "one"
    assert exercise(run) == EXPECTED
    assert not list((tmp_path / "runs" / "one" / "checkpoints").glob(".tmp-*"))  # written atomically


def test_a_bucket_is_written_read_and_listed_as_a_local_folder_is(s3):
    run = location(s3.uri("runs/one"))
    assert not run.is_local and run.path == "distmeta-runs/runs/one"
    assert exercise(run) == EXPECTED


def test_a_bucket_location_names_itself_with_its_endpoint_so_that_a_worker_reopens_it(s3):
    run = location(s3.uri("runs/two")) / "metrics.jsonl"
    run.write_text("written on the driver")
    assert str(run) == f"s3://distmeta-runs/runs/two/metrics.jsonl?endpoint_override={s3.endpoint}&scheme=http"
    assert location(str(run)).read_text() == "written on the driver"
    assert pickle.loads(pickle.dumps(run)).read_text() == "written on the driver"
    assert run.parent.name == "two" and run.parent.parent == location(s3.uri("runs"))


def test_ray_gets_a_bucket_as_its_filesystem_and_a_path_without_the_scheme(s3, tmp_path):
    bucket = ray_storage(location(s3.uri("runs")))
    assert bucket["storage_path"] == "distmeta-runs/runs"
    assert isinstance(bucket["storage_filesystem"], pyarrow.fs.S3FileSystem)
    assert ray_storage(location(tmp_path)) == {"storage_path": str(tmp_path)}


def test_a_uri_of_no_bucket_scheme_is_refused_naming_the_schemes_it_takes():
    with pytest.raises(UnknownStorageError, match=r"ftp://host/runs: a local path or a bucket URI \(s3, gs, gcs"):
        location("ftp://host/runs")
    assert location("file:///tmp/runs").local_path.as_posix() == "/tmp/runs"
