# One image for the Dask scheduler, the Dask workers and a job client: workers import the same
# tickflow (kernels, connectors) as the client that submits the job.
#   docker compose build && docker compose up -d dask-scheduler dask-worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/tmp/numba
WORKDIR /opt/tickflow
COPY pyproject.toml README.md LICENSE ./
COPY tickflow ./tickflow
COPY engine ./engine
COPY kernels ./kernels
COPY connectors ./connectors
COPY jobs ./jobs
RUN pip install .
WORKDIR /data
CMD ["run-job", "--help"]
