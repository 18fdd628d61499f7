# One image for both roles: `docker run IMAGE api` or `docker run IMAGE worker`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY alembic ./alembic
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /srv wavecast
COPY --from=build /install /usr/local
WORKDIR /srv
COPY alembic.ini ./
COPY alembic ./alembic
USER wavecast
ENV WAVECAST_JSON_LOGS=true PYTHONUNBUFFERED=1
EXPOSE 8000
ENTRYPOINT ["wavecast"]
CMD ["api"]
