"""The project's own docker-compose.yml brought up with podman and podman-compose, the upstream
images swapped for the local stand-ins (deploy/local/compose.override.yml), on free host ports,
under a project name and an image tag of its own, so it disturbs nothing else on the machine;
the base image, the stand-ins and the service's dependencies stage are kept for the next run
(tagged `test`, rebuilt when what goes into them changes)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.settings import Settings
from learning_platform.temporal.payload_codec import new_key

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "deploy/local/containers.conf"
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "deploy/local/compose.override.yml"]
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"
TEMPORAL_CLI = Path(sys.executable).parent / "temporal"
# Kept between runs, like the base image: build-images.sh rebuilds them when their inputs change.
STANDIN_TAG = "test"
BUILD_TIMEOUT_SECONDS = 1200
UP_TIMEOUT_SECONDS = 420


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    ports: dict[str, int]
    codec_key_id: str
    empty_env_file: Path
    log: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, workdir: Path) -> Stack:
        if shutil.which("podman") is None:
            raise RuntimeError("podman is not installed: `make test-containers` installs it")
        tag = f"ci-{uuid.uuid4().hex[:8]}"
        ports = {
            name: free_loopback_port()
            for name in (
                "TEMPORAL_HOST_PORT",
                "TEMPORAL_UI_HOST_PORT",
                "API_HOST_PORT",
                "PROMETHEUS_HOST_PORT",
                "CODEC_SERVER_HOST_PORT",
            )
        }
        empty = workdir / "empty.env"
        empty.write_text("")
        key_id = f"key-{tag}"
        env = {
            **os.environ,
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
            "STANDIN_TAG": STANDIN_TAG,
            "APP_IMAGE": f"localhost/learning-jobs:{tag}",
            "BUILD_ID": tag,
            "APP_DB_PASSWORD": secrets.token_hex(12),
            "TEMPORAL_DB_PASSWORD": secrets.token_hex(12),
            "JWT_SECRET": secrets.token_urlsafe(48),
            "PAYLOAD_CODEC_KEYS": json.dumps({key_id: new_key()}),
            "CODEC_SERVER_TOKEN": secrets.token_urlsafe(32),
            **{name: str(port) for name, port in ports.items()},
        }
        return cls(
            project=f"ljci{tag[3:]}", env=env, ports=ports, codec_key_id=key_id,
            empty_env_file=empty,
        )  # fmt: skip

    # --- commands ---------------------------------------------------------------------------

    def run(self, argv: list[str], timeout: float = 120, check: bool = True) -> str:
        result = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{argv} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}"
            )
        return result.stdout

    def compose(self, *args: str, timeout: float = 120) -> str:
        files = [part for path in COMPOSE_FILES for part in ("-f", str(path))]
        argv = [str(PODMAN_COMPOSE), "-p", self.project, "--env-file", str(self.empty_env_file)]
        return self.run([*argv, *files, *args], timeout=timeout)

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return self.run(["podman", *args], timeout=timeout, check=check)

    def build(self) -> None:
        built = self.run(
            [str(ROOT / "deploy/local/build-images.sh")], timeout=BUILD_TIMEOUT_SECONDS
        )
        self.log.extend(
            line
            for line in built.splitlines()
            if line.startswith(("built ", "base image ", "images ready ")) or "up to date" in line
        )

    def up(self) -> None:
        # --no-deps: podman 4.3 cannot start a container whose dependency is a finished
        # one-shot that itself depends on another ("depends on container … not found in input
        # list"), so podman-compose starts every service in dependency order without podman's
        # --requires and without waiting: each service waits for what it needs by itself.
        self.compose("up", "-d", "--no-build", "--no-deps", timeout=UP_TIMEOUT_SECONDS)

    # --- what runs --------------------------------------------------------------------------

    def containers(self, service: str | None = None, *, every: bool = True) -> list[str]:
        filters = ["--filter", f"label=io.podman.compose.project={self.project}"]
        if service is not None:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        listed = self.podman("ps", *(["-a"] if every else []), *filters, "--format", "{{.Names}}")
        return sorted(listed.split())

    def inspect(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.podman("inspect", name))
        return found[0]

    def logs(self, name: str) -> str:
        result = subprocess.run(
            ["podman", "logs", name], env=self.env, capture_output=True, text=True, timeout=60
        )
        return result.stdout + result.stderr

    def exec(self, service: str, *argv: str) -> str:
        return self.podman("exec", self.containers(service)[0], *argv)

    def psql(self, sql: str) -> str:
        return self.exec(
            "postgres", "psql", "-U", "learning", "-d", "learning", "-At", "-v",
            "ON_ERROR_STOP=1", "-c", sql,
        )  # fmt: skip

    def make_build_current(self) -> None:
        """docs/operations.md's rollout step: the workers' build (BUILD_ID) becomes the current
        version of their deployment. Fails until the workers have polled with it."""
        self.run([
            str(TEMPORAL_CLI), "worker", "deployment", "set-current-version",
            "--address", f"127.0.0.1:{self.ports['TEMPORAL_HOST_PORT']}",
            "--deployment-name", Settings().worker_deployment_name,
            "--build-id", self.env["BUILD_ID"], "--yes",
        ])  # fmt: skip

    def url(self, port_variable: str) -> str:
        return f"http://127.0.0.1:{self.ports[port_variable]}"

    # --- cleaning up ------------------------------------------------------------------------

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, pods, networks and volumes of this project still on the machine."""
        label = f"label=io.podman.compose.project={self.project}"
        return {
            "containers": self.podman(
                "ps", "-a", "--filter", label, "--format", "{{.Names}}"
            ).split(),
            "pods": [
                pod
                for pod in self.podman("pod", "ps", "--format", "{{.Name}}").split()
                if self.project in pod
            ],
            "networks": [
                net
                for net in self.podman("network", "ls", "--format", "{{.Name}}").split()
                if net.startswith(f"{self.project}_")
            ],
            "volumes": self.podman(
                "volume", "ls", "--filter", label, "--format", "{{.Name}}"
            ).split(),
        }

    def remove_everything(self) -> None:
        """Whatever a failed run left: containers, pods, networks, volumes, this run's image of
        the service and the build cache. The base image and the stand-ins stay: the next run
        reuses them while their inputs are unchanged (deploy/local/build-images.sh)."""
        left = self.leftovers()
        for kind, names in (("rm", left["containers"]), ("pod", left["pods"])):
            for name in names:
                command = ["rm", "-f", name] if kind == "rm" else ["pod", "rm", "-f", name]
                self.podman(*command, check=False)
        for network in left["networks"]:
            self.podman("network", "rm", "-f", network, check=False)
        for volume in left["volumes"]:
            self.podman("volume", "rm", "-f", volume, check=False)
        self.podman("rmi", "-f", self.env["APP_IMAGE"], check=False)
        self.podman("image", "prune", "-f", check=False)
