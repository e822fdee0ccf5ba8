# The worker image for docker-compose: the production path runs `longthread worker` against
# an external Temporal and Postgres with pgvector.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY memory ./memory
COPY activities ./activities
COPY workflows ./workflows
COPY worker ./worker
COPY longthread ./longthread
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install '.[local]'
RUN useradd --create-home longthread
USER longthread
CMD ["longthread", "worker"]
