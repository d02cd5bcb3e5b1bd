"""docker/Dockerfile and docker-compose.yml agree with the code they deploy (no Docker engine needed): commands are
real CLI entry points, every environment variable is one the settings read, ports and health checks line up,
COPY sources exist, and the container runs as a non-root user."""

from __future__ import annotations

import argparse
import fnmatch
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices, TypeAdapter
from pydantic_settings import BaseSettings

from app.cli import SERVICE_SUBCOMMANDS
from app.main import create_app
from app.settings import Settings
from infinitygan.checkpoint import SHIPPED_MODEL
from infinitygan.cli import build_parser
from tiles.cache import EVICTION_POLICY

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
IMAGE_PATH = Path("/app")  # WORKDIR in the image
SETTINGS_CLASSES: list[type[BaseSettings]] = [Settings]
HEALTH_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[\w/]*)")


# parsing


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def our_services() -> dict[str, dict]:
    """The services that run this project's image (the rest are off-the-shelf images such as redis)."""
    return {name: svc for name, svc in services().items() if "build" in svc or svc.get("image", "").startswith("infin")}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions = []
    for text in logical:
        keyword, _, arguments = text.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def instruction_args(keyword: str) -> list[str]:
    return [arguments for name, arguments in dockerfile_instructions() if name == keyword]


def exec_form(arguments: str) -> list[str]:
    """CMD/HEALTHCHECK CMD in JSON exec form (shell form would put a shell between Docker and the process)."""
    return yaml.safe_load(arguments)  # a JSON array is valid YAML


def dockerfile_cmd() -> list[str]:
    (*_, last) = instruction_args("CMD")
    return exec_form(last)


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in instruction_args("ENV"):
        for item in shlex.split(arguments):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def copy_sources() -> list[str]:
    sources = []
    for arguments in instruction_args("COPY"):
        parts = [part for part in shlex.split(arguments) if not part.startswith("--")]
        sources += parts[:-1]
    return sources


def settings_env_names() -> set[str]:
    """Every environment variable name the settings classes read (pydantic-settings matches case-insensitively)."""
    names = set()
    for settings_class in SETTINGS_CLASSES:
        prefix = settings_class.model_config.get("env_prefix", "")
        for field_name, field in settings_class.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(choice) for choice in alias.choices)
            elif isinstance(alias, str):
                names.add(alias)
            else:
                names.add(prefix + (field.alias or field_name))
    return {name.upper() for name in names}


def cli_parser() -> argparse.ArgumentParser:
    return build_parser(SERVICE_SUBCOMMANDS)


def parse_command(command: list[str]) -> argparse.Namespace:
    """The command as the console script would parse it; a bad subcommand or option fails the test."""
    assert command[0] == "infinitygan", f"{command}: not the project's console script"
    try:
        return cli_parser().parse_args(command[1:])
    except SystemExit:
        pytest.fail(f"`{shlex.join(command)}` is not a valid infinitygan command")


def health_port_and_path(test: list[str] | str) -> tuple[int, str]:
    text = test if isinstance(test, str) else " ".join(test)
    match = HEALTH_URL.search(text)
    assert match, f"no loopback health URL in {text!r}"
    return int(match.group(1)), match.group(2)


def container_ports(spec: list) -> list[tuple[str | None, int]]:
    """compose `ports` entries as (host part or None, container port)."""
    parsed = []
    for entry in spec:
        host, _, container = str(entry).rpartition(":")
        parsed.append((host or None, int(container.split("/")[0])))
    return parsed


# compose


def test_compose_parses_with_the_three_roles() -> None:
    assert {"redis", "api", "worker"} <= set(services())
    assert set(our_services()) == {"api", "worker"}
    for name, service in our_services().items():
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert (COMPOSE_FILE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_every_service_command_is_a_real_cli_entry_point() -> None:
    for service in our_services().values():
        parse_command(service["command"])
    assert parse_command(services()["api"]["command"]).command == "serve"
    assert parse_command(services()["worker"]["command"]).command == "worker"
    assert parse_command(dockerfile_cmd()).command == "serve"


def test_every_environment_variable_is_read_by_the_settings() -> None:
    readable = settings_env_names()
    assert {"REDIS_URL", "INFINITYGAN_MODEL", "INFINITYGAN_RENDER_THREADS"} <= readable  # the introspection works
    for name, service in our_services().items():
        unknown = {key for key in service.get("environment", {}) if key.upper() not in readable}
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"
    image_settings = {key for key in dockerfile_env() if key.startswith("INFINITYGAN_")}
    assert image_settings <= readable


def test_environment_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """With `${NAME:-default}` defaults substituted, the settings accept what compose passes and read all of it."""
    for name, service in our_services().items():
        env = {key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)) for key, value in service["environment"].items()}
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            settings = Settings()
        assert settings.redis_url == env["REDIS_URL"] and urlsplit(settings.redis_url).hostname == "redis", name
        assert str(settings.model) == env["INFINITYGAN_MODEL"], name
        for key, value in env.items():  # each variable landed in its field (a typo'd name would be ignored)
            field = key.removeprefix("INFINITYGAN_").lower()
            if field in Settings.model_fields:
                expected = TypeAdapter(Settings.model_fields[field].annotation).validate_python(value)
                assert getattr(settings, field) == expected, (name, key)
    assert services()["api"]["environment"]["INFINITYGAN_OUTPAINT_WORKER"] == "false"  # the workers run jobs


def test_redis_persists_and_evicts_only_what_carries_a_ttl() -> None:
    command = services()["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "redis-server"
    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == EVICTION_POLICY == "volatile-lru"
    assert flags["--maxmemory"]
    assert any(volume.endswith(":/data") for volume in services()["redis"]["volumes"])


def test_api_ports_and_healthcheck_line_up_with_serve() -> None:
    api = services()["api"]
    serve = parse_command(api["command"])
    assert serve.host == "0.0.0.0"  # reachable from outside the container
    health_port, health_path = health_port_and_path(api["healthcheck"]["test"])
    image_port, image_path = health_port_and_path(instruction_args("HEALTHCHECK")[-1])
    exposed = {int(port.split("/")[0]) for arguments in instruction_args("EXPOSE") for port in arguments.split()}
    assert health_port == image_port == serve.port == parse_command(dockerfile_cmd()).port
    assert exposed == {serve.port}
    assert [int(port) for port in api["expose"]] == [serve.port]
    assert health_path == image_path == "/healthz"
    assert "/healthz" in create_app(Settings()).openapi()["paths"]
    for host, container in container_ports(api["ports"]):
        assert container == serve.port
        # Several replicas cannot share one fixed host port: none, or a range.
        assert host is None or "-" in host, f"api publishes a fixed host port {host}: replicas would collide"


def test_api_scales_and_drains_before_it_is_killed() -> None:
    api = services()["api"]
    serve = parse_command(api["command"])
    assert str(api["deploy"]["replicas"])
    assert serve.graceful_timeout < duration_s(api["stop_grace_period"])
    for service in our_services().values():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_worker_has_no_http_healthcheck() -> None:
    """The image's HEALTHCHECK probes the API port; a worker serves no HTTP, so it must not inherit it."""
    assert services()["worker"]["healthcheck"] == {"disable": True}


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(value) * units[unit] for value, unit in re.findall(r"([\d.]+)(ms|s|m|h)", text))


# Dockerfile


def test_dockerfile_base_torch_and_user() -> None:
    assert instruction_args("FROM")[0].startswith("python:3.11-slim")
    *_, user = instruction_args("USER")
    assert user.split(":")[0] not in {"root", "0"}
    last_user = max(i for i, (name, _) in enumerate(dockerfile_instructions()) if name == "USER")
    assert all(name != "RUN" for name, _ in dockerfile_instructions()[last_user:]), "nothing runs as root after USER"
    torch_pin = re.search(r'"torch==([\w.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"TORCH_VERSION={torch_pin}" in instruction_args("ARG")
    assert Path(dockerfile_env()["INFINITYGAN_MODEL"]) == IMAGE_PATH / SHIPPED_MODEL.relative_to(ROOT)


def test_dockerfile_copies_paths_that_exist_and_are_not_dockerignored() -> None:
    ignored = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]
    for source in copy_sources():
        if Path(source) == Path("models"):
            continue  # the trained model: see the next test
        assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
        assert not any(fnmatch.fnmatch(source.rstrip("/"), pattern) for pattern in ignored), source


def test_the_shipped_model_is_in_the_build_context() -> None:
    assert "models/" in copy_sources()
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"{SHIPPED_MODEL.relative_to(ROOT)} is not in this checkout yet: `docker build` would fail")
    assert SHIPPED_MODEL.stat().st_size > 0
