# One image for every Python process of the saga: the three services (`python -m services.<name>`,
# also `... migrate`), the three relays (`python -m relay <name>`) and the dashboard
# (`python -m dashboard`). docker-compose.yml names
# the process in each container's command and passes every setting in the environment; nothing
# secret is in the image.
# The base image: the official one unless a build arg names a stand-in (deploy/images/build.sh
# builds saga-offline/python:3.11 from Debian's packages, for a machine with no image registry).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# The dependencies in their own layer, rebuilt only when pyproject.toml changes, not on every
# source edit: the list comes straight from [project] dependencies.
COPY pyproject.toml ./
# An optional build secret `pip-ca` is a CA bundle for pip, for a network whose proxy re-signs
# TLS (docker-compose.yml: SAGA_PIP_CA_FILE); without it pip uses its own CA list. A secret is
# mounted for its RUN only and never stored in a layer. (No `# syntax=` line: it would pull.)
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the source, and the project itself without touching the dependencies again.
COPY shared/ shared/
COPY services/ services/
COPY relay/ relay/
COPY dashboard/ dashboard/
# pip fetches the build backend (setuptools) here too: the same optional secret.
RUN --mount=type=secret,id=pip-ca,required=false \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && pip install --no-deps . \
    && rm -rf build *.egg-info \
    && python -m compileall -q shared services relay dashboard

# Never root: the code and the installed packages stay root-owned, read-only to the process.
RUN groupadd --system --gid 10001 saga \
    && useradd --system --uid 10001 --gid saga --no-create-home --shell /usr/sbin/nologin saga
USER 10001:10001

# The services' default ports and the relays' metrics port (documentation; compose publishes).
EXPOSE 8000 8001 8002 8003 9100
