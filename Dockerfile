# Build stage: build the wheel and its dependencies' wheels.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY streaming ./streaming
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: slim, non-root, data in a volume.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 imagery
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER imagery
WORKDIR /home/imagery
ENV IMAGERY_PROXY_HOST=0.0.0.0 \
    IMAGERY_PROXY_PORT=8080 \
    IMAGERY_PROXY_DATA_DIR=/home/imagery/data
VOLUME ["/home/imagery/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"
ENTRYPOINT ["imagery-proxy"]
CMD ["serve"]
