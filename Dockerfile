# One image for every Python process of the saga: the three services (`python -m services.<name>`,
# also `... migrate`) and the three relays (`python -m relay <name>`). docker-compose.yml names
# the process in each container's command and passes every setting in the environment; nothing
# secret is in the image.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# The dependencies in their own layer, rebuilt only when pyproject.toml changes, not on every
# source edit: the list comes straight from [project] dependencies.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the source, and the project itself without touching the dependencies again.
COPY shared/ shared/
COPY services/ services/
COPY relay/ relay/
RUN pip install --no-deps . \
    && rm -rf build *.egg-info \
    && python -m compileall -q shared services relay

# Never root: the code and the installed packages stay root-owned, read-only to the process.
RUN groupadd --system --gid 10001 saga \
    && useradd --system --uid 10001 --gid saga --no-create-home --shell /usr/sbin/nologin saga
USER 10001:10001

# The services' default ports and the relays' metrics port (documentation; compose publishes).
EXPOSE 8001 8002 8003 9100
