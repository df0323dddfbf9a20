"""Every file in cluster/ is checked: it parses, has what its tool requires, and the
distmeta command lines in it are ones the CLI's own parser and config loader accept."""

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from distmeta.cli import build_parser
from distmeta.config import load_config
from distmeta.jobs import local_cluster
from tests.ray_processes import leaves_no_ray_process

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
RAY_UP_CONFIGS = ["aws-gpu.yaml", "gcp-gpu.yaml"]
KUBERAY_MANIFESTS = ["kuberay/raycluster.yaml", "kuberay/rayjob-train.yaml", "kuberay/rayjob-tune.yaml"]
OTHER_FILES = ["README.md", "Dockerfile", "local_cluster.py"]


def pinned_ray_version() -> str:
    constraints = (CLUSTER.parent / "constraints.txt").read_text()
    return re.search(r"^ray==(\S+)$", constraints, re.MULTILINE).group(1)


def test_every_file_in_cluster_is_one_these_tests_check():
    present = {
        path.relative_to(CLUSTER).as_posix()
        for path in CLUSTER.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert present == set(RAY_UP_CONFIGS + KUBERAY_MANIFESTS + OTHER_FILES)


def check_distmeta_command(line: str) -> None:
    """A `distmeta ...` command line the CLI parses, with a config its loader accepts."""
    words = shlex.split(line)
    assert words[0] == "distmeta", line
    try:
        args = build_parser().parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"the distmeta parser refuses: {line}")
    config = None if args.config is None else CLUSTER.parent / args.config
    assert config is None or config.is_file(), f"{args.config} is not in the repository"
    load_config(config, args.overrides)  # raises ConfigError naming the field


@pytest.mark.parametrize("name", RAY_UP_CONFIGS)
def test_a_ray_up_config_satisfies_rays_schema_and_runs_gpu_workers_with_distmeta(name):
    config = yaml.safe_load((CLUSTER / name).read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    node_types = config["available_node_types"]
    assert config["head_node_type"] in node_types
    gpu_types = [node for node in node_types.values() if node["resources"].get("GPU", 0) >= 1]
    assert gpu_types and all(node["min_workers"] <= node["max_workers"] <= config["max_workers"] for node in gpu_types)
    assert config["docker"]["image"].startswith(f"rayproject/ray:{pinned_ray_version()}-")
    assert any("pip install" in command and "constraints.txt" in command for command in config["setup_commands"])
    head_start = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head_start and "--dashboard-host=127.0.0.1" in head_start


@pytest.mark.parametrize("name", RAY_UP_CONFIGS)
def test_a_ray_up_cluster_runs_every_node_with_token_auth_and_the_token_copied_from_a_file(name):
    text = (CLUSTER / name).read_text()
    config = yaml.safe_load(text)
    assert "RAY_AUTH_TOKEN=" not in text  # the token itself is never in the config
    for command in [*config["head_start_ray_commands"], *config["worker_start_ray_commands"]]:
        if "ray start" not in command:
            continue
        settings = dict(re.findall(r"(RAY_AUTH_\w+)=(\S+?);?(?=\s)", command))
        assert settings.get("RAY_AUTH_MODE") == "token", command
        # the token file on the node is a copy of the one `ray get-auth-token --generate` made locally
        assert config["file_mounts"][settings["RAY_AUTH_TOKEN_PATH"]] == "~/.ray/auth_token", command
    assert "ray get-auth-token --generate" in text


def token_auth_settings(container: dict) -> tuple[str | None, dict | None]:
    """(RAY_AUTH_MODE's value, where RAY_AUTH_TOKEN comes from) in a container's env."""
    env = {variable["name"]: variable for variable in container.get("env", [])}
    token = env.get("RAY_AUTH_TOKEN", {})
    assert "value" not in token, "a token written in the manifest"
    return env.get("RAY_AUTH_MODE", {}).get("value"), token.get("valueFrom")


FROM_THE_SECRET = {"secretKeyRef": {"name": "distmeta-ray-token", "key": "auth_token"}}


def test_every_kuberay_pod_and_submitter_runs_with_token_auth_and_the_token_from_a_secret():
    (cluster,) = [d for d in kuberay_documents("kuberay/raycluster.yaml") if d["kind"] == "RayCluster"]
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    containers = [container for group in groups for container in group["template"]["spec"]["containers"]]
    containers.append(cluster["spec"]["autoscalerOptions"])
    for name in ["kuberay/rayjob-train.yaml", "kuberay/rayjob-tune.yaml"]:
        (job,) = kuberay_documents(name)
        containers.extend(job["spec"]["submitterPodTemplate"]["spec"]["containers"])
    assert len(containers) == 5
    assert all(token_auth_settings(container) == ("token", FROM_THE_SECRET) for container in containers)
    assert "kubectl create secret generic distmeta-ray-token" in (CLUSTER / "kuberay/raycluster.yaml").read_text()


def kuberay_documents(name: str) -> list[dict]:
    return [document for document in yaml.safe_load_all((CLUSTER / name).read_text()) if document]


def test_the_raycluster_has_a_head_and_autoscaled_gpu_workers_on_a_shared_volume():
    documents = {document["kind"]: document for document in kuberay_documents("kuberay/raycluster.yaml")}
    assert documents["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    cluster = documents["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["rayVersion"] == pinned_ray_version()
    head = cluster["spec"]["headGroupSpec"]
    assert head["template"]["spec"]["containers"][0]["image"]
    (workers,) = cluster["spec"]["workerGroupSpecs"]
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    (container,) = workers["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for pod in (head["template"]["spec"], workers["template"]["spec"]):
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "distmeta-shared"


@pytest.mark.parametrize("name", ["kuberay/rayjob-train.yaml", "kuberay/rayjob-tune.yaml"])
def test_a_rayjob_runs_a_valid_distmeta_command_on_the_raycluster(name):
    (job,) = kuberay_documents(name)
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "distmeta"}
    check_distmeta_command(job["spec"]["entrypoint"])
    assert "--address auto" in job["spec"]["entrypoint"]


def commands_in_comments(text: str) -> list[str]:
    """The `distmeta submit ...` commands shown in a file's comments, continuation lines joined."""
    comment = "\n".join(line[1:].strip() for line in text.splitlines() if line.startswith("#"))
    lines = comment.replace("\\\n", " ").splitlines()
    return [line for line in lines if line.startswith("distmeta submit ")]


def test_the_commands_in_the_configs_comments_are_valid_too():
    for name in RAY_UP_CONFIGS + ["kuberay/raycluster.yaml"]:
        commands = commands_in_comments((CLUSTER / name).read_text())
        assert commands, name
        for command in commands:
            args = build_parser().parse_args(shlex.split(command)[1:])
            assert args.command == "submit" and args.address == "http://127.0.0.1:8265"
            load_config(CLUSTER.parent / args.config, args.overrides)


def gpu_torch_pin() -> tuple[str, str]:
    """(version, CUDA tag) of the torch that constraints-gpu.txt pins, e.g. ("2.13.0", "cu130")."""
    constraints = (CLUSTER.parent / "constraints-gpu.txt").read_text()
    pinned = re.search(r"^torch==(\S+)\+(cu\d+)$", constraints, re.MULTILINE)
    assert pinned, "constraints-gpu.txt must pin torch==VERSION+cuNNN, a CUDA build"
    return pinned.group(1), pinned.group(2)


def gpu_install_is_pinned(command: str) -> bool:
    """`command` installs with both constraints files and the index that holds the CUDA build."""
    _, tag = gpu_torch_pin()
    return (
        "constraints.txt" in command
        and "constraints-gpu.txt" in command
        and f"--extra-index-url https://download.pytorch.org/whl/{tag}" in command
    )


def test_the_gpu_constraints_pin_a_cuda_build_of_the_torch_the_cpu_constraints_pin():
    version, tag = gpu_torch_pin()
    cpu_pin = re.search(r"^torch==(\S+)$", (CLUSTER.parent / "constraints.txt").read_text(), re.MULTILINE).group(1)
    assert version == cpu_pin  # so that both files apply at once: torch==2.13.0 admits 2.13.0+cu130
    constraints = (CLUSTER.parent / "constraints-gpu.txt").read_text()
    cuda_major = tag[2:-1]
    assert re.search(rf"^nvidia-nccl-cu{cuda_major}==\S+$", constraints, re.MULTILINE), "NCCL must be pinned"
    assert re.search(rf"^nvidia-cudnn-cu{cuda_major}==\S+$", constraints, re.MULTILINE), "cuDNN must be pinned"
    assert f"https://download.pytorch.org/whl/{tag}" in constraints
    from distmeta.devices import CUDA_INDEX_URL  # what a worker without a CUDA torch is told to install

    assert CUDA_INDEX_URL == f"https://download.pytorch.org/whl/{tag}"


def test_the_image_installs_distmeta_and_a_cuda_torch_on_the_pinned_ray_cuda_image():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{pinned_ray_version()}-py311-gpu" in dockerfile  # Ray's image on NVIDIA's CUDA base
    install = dockerfile[dockerfile.index("RUN pip install") :].replace("\\\n", " ")
    assert "COPY --chown=ray:users pyproject.toml constraints.txt constraints-gpu.txt" in dockerfile
    assert gpu_install_is_pinned(install) and "-e ." in install
    assert "assert torch.version.cuda" in install  # a CPU torch fails the build, not the first run


@pytest.mark.parametrize("name", RAY_UP_CONFIGS)
def test_a_ray_up_config_installs_the_cuda_build_of_torch(name):
    config = yaml.safe_load((CLUSTER / name).read_text())
    assert any(gpu_install_is_pinned(command) for command in config["setup_commands"])


@pytest.mark.slow
def test_the_local_cluster_script_starts_and_stops_only_its_own_cluster(tmp_path, short_temp, temp_roots):
    ast.parse((CLUSTER / "local_cluster.py").read_text())
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(HOME=str(tmp_path / "home"), TMPDIR=short_temp)
    folder = tmp_path / "local"

    def script(*args):
        return subprocess.run(
            [sys.executable, str(CLUSTER / "local_cluster.py"), *args, "--folder", str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    with leaves_no_ray_process(temp_roots, "the local cluster script"):
        try:
            started = script("start", "--nodes", "1")
            assert started.returncode == 0, started.stderr
            address = re.search(r"job server:\s+(http://127\.0\.0\.1:\d+)", started.stdout).group(1)
            token = tmp_path / "home" / ".ray" / "auth_token"  # none was there: made as ray.init makes it
            assert f"token auth:  on, with the token of {token} (generated now)" in started.stdout
            assert f"RAY_AUTH_TOKEN_PATH={folder / 'auth_token'}" in started.stdout
            assert script("status").returncode == 0
            assert local_cluster.processes_of(folder)
            assert f"{address}" in json.dumps(json.loads((folder / "cluster.json").read_text()))
        finally:
            stopped = script("stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert local_cluster.processes_of(folder) == []


def test_every_raycluster_pod_runs_the_image_built_from_the_dockerfile():
    text = (CLUSTER / "kuberay/raycluster.yaml").read_text()
    assert "built from cluster/Dockerfile" in text
    (cluster,) = [d for d in kuberay_documents("kuberay/raycluster.yaml") if d["kind"] == "RayCluster"]
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    images = {container["image"] for group in groups for container in group["template"]["spec"]["containers"]}
    assert images == {"REGISTRY/distmeta:0.1.0"}
