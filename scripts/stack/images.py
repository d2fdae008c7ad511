"""The images docker-compose.yml runs, each a setting whose default is the official image; and,
for a machine where no registry answers, stand-ins built from Debian's packages.

`resolve` keeps every image the environment names, and every official image this engine has or
can pull. For the others it builds the stand-in (deploy/images/build.sh: debootstrap, then
images that keep the contract of the official one this project relies on) and names it in the
image's setting. A stand-in never carries an official image's name.
"""

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from scripts.stack.config import ROOT

BUILD_SCRIPT = ROOT / "deploy" / "images" / "build.sh"
# The system's CA bundle: on a machine behind a proxy that re-signs TLS it is what lets pip reach
# PyPI inside a build (docker-compose.yml's build secret); elsewhere it does no harm.
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PULL_TIMEOUT_SECONDS = 300


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    variable: str  # the setting docker-compose.yml reads
    official: str
    stand_in: str
    target: str  # build.sh's target for the stand-in


IMAGES = (
    Image("SAGA_PYTHON_IMAGE", "python:3.11-slim", "saga-offline/python:3.11", "python"),
    Image("SAGA_POSTGRES_IMAGE", "postgres:15", "saga-offline/postgres:15", "postgres"),
    Image("SAGA_RABBITMQ_IMAGE", "rabbitmq:4.1-management", "saga-offline/rabbitmq:4", "rabbitmq"),
    Image(
        "SAGA_PROMETHEUS_IMAGE",
        "prom/prometheus:v2.53.4",
        "saga-offline/prometheus:2",
        "prometheus",
    ),
)
# Only for the tracing profile: not built unless asked for.
TRACE_VIEWER = Image(
    "SAGA_TRACE_VIEWER_IMAGE",
    "arizephoenix/phoenix:version-20.26.1",
    "saga-offline/phoenix:20",
    "phoenix",
)


def _note(text: str) -> None:
    """Progress goes to stderr: a tool's stdout may be its report (`./saga chaos --json`)."""
    print(text, file=sys.stderr)


def resolve(
    env: Mapping[str, str], say: Callable[[str], None] = _note, *, tracing: bool = False
) -> dict[str, str]:
    """The settings to run docker-compose.yml with on this engine: every image it can run
    (the trace viewer's too, for the tracing profile), and the CA bundle for pip."""
    wanted = (*IMAGES, TRACE_VIEWER) if tracing else IMAGES
    settings = {
        image.variable: runnable(image, say) for image in wanted if not env.get(image.variable)
    }
    if not env.get("SAGA_PIP_CA_FILE") and SYSTEM_CA_BUNDLE.exists():
        settings["SAGA_PIP_CA_FILE"] = str(SYSTEM_CA_BUNDLE)
    return settings


def runnable(image: Image, say: Callable[[str], None] = _note) -> str:
    """The official image if this engine has it or can pull it; else its stand-in, built
    first if it is not there yet."""
    if _present(image.official) or _pulled(image.official):
        return image.official
    if not _present(image.stand_in):
        say(f"no registry gives {image.official}: building {image.stand_in} (Debian packages)")
        build(image.target)
    return image.stand_in


RABBITMQ = IMAGES[2]


def build(*targets: str) -> None:
    """Build stand-ins with deploy/images/build.sh (root, debootstrap and an engine needed)."""
    if os.geteuid() != 0:
        raise ImageError(
            f"building the stand-in images needs root (debootstrap): sudo {BUILD_SCRIPT}"
        )
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *targets], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise ImageError(
            f"the stand-in images ({', '.join(targets)}) could not be built:\n  "
            + "\n  ".join(said)
        )


def _present(name: str) -> bool:
    return _docker("image", "inspect", name).returncode == 0


def _pulled(name: str) -> bool:
    try:
        return _docker("pull", "--quiet", name, timeout=PULL_TIMEOUT_SECONDS).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
