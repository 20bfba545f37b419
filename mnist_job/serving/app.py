"""`mnist-job serve`: the champion behind HTTP with Ray Serve; ``POST /predict``, ``GET /healthz``, ``GET /``.

One deployment: each replica loads the model from MLflow when it starts (the champion unless told
otherwise) and answers with FastAPI routes. Requests are checked one by one (a bad one gets a 4xx
naming the problem and cannot harm the others), then classified together: ``@serve.batch`` gathers
the pixels of concurrent requests into one forward pass.

``POST /predict`` takes JSON, ``{"pixels": ...}`` or a bare nested list, holding one image (28x28) or a
batch (Nx28x28, Nx1x28x28) of 0..255 pixels; raw pixels (``Content-Type: application/octet-stream``:
N x 784 bytes, one uint8 per pixel, each image row by row), the compact form for batches; or an image
file (``Content-Type: image/png`` or ``image/jpeg``), converted the MNIST way
(mnist_job/serving/images.py). It answers ``{"model": URI, "version": the registry version that answered,
"predictions": [{"digit", "probability", "probabilities"}]}``; a served alias (the champion) is followed.

Per request, a replica's own work is decoding (orjson: the stdlib's json takes 5 ms for a batch of 64),
one forward pass per gathered batch, and encoding the answer in one call (orjson, not FastAPI's
encoder walking every number); bench/serving.py measures it.
"""


import logging
from pathlib import Path

import numpy as np
import orjson

from mnist_job.core.config import Runtime
from mnist_job.core.errors import DataError
from mnist_job.core.paths import FileOutput
from mnist_job.model.pixel_pyfunc import DIGIT_COLUMNS, pixel_batch
from mnist_job.serving.images import decode_image
from mnist_job.tracking.registry import CHAMPION
from mnist_job.training.ray_cluster import init_ray

MAX_IMAGES = 256  # per request; larger batches belong in `mnist-job predict`
MAX_BODY_BYTES = 4 << 20  # 256 images of 28x28 as JSON fit well below this
RAW_PIXELS = "application/octet-stream"
IMAGE_BYTES = 28 * 28
PAGE = Path(__file__).with_name("page.html")

logger = logging.getLogger(__name__)


def is_ready_file(path: Path) -> bool:
    """Whether the file at ``path`` is one ``serve --ready-file`` wrote (one URL line), which it may replace."""
    try:
        text = path.read_text()[:4096]
    except (OSError, UnicodeDecodeError):
        return False
    return text.startswith(("http://", "https://")) and text.count("\n") <= 1


READY_FILE = FileOutput("a ready file written by `mnist-job serve`", is_ready_file)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_request(body: bytes, content_type: str) -> np.ndarray:
    """The request's pixels as float32 (N, 1, 28, 28); BadRequest (status, message) when they are not usable."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(413, f"body too large: {len(body)} bytes, at most {MAX_BODY_BYTES}")
    if not body:
        raise BadRequest(400, "empty body: send JSON pixels or an image")
    kind = content_type.split(";")[0].strip().lower()
    if kind == RAW_PIXELS:
        return raw_pixels(body)
    if kind.startswith("image/"):
        try:
            return pixel_batch(decode_image(body, "uploaded image"))
        except DataError as exc:
            raise BadRequest(400, str(exc)) from None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, f"not JSON ({exc}); send {{\"pixels\": [[...28 rows of 28 numbers...]]}} "
                              "or an image with Content-Type image/png") from None
    pixels = document.get("pixels") if isinstance(document, dict) else document
    if pixels is None:
        raise BadRequest(400, "JSON: expected a field \"pixels\" (or a bare nested list)")
    count = len(pixels) if isinstance(pixels, list) and pixels and isinstance(pixels[0], list) and \
        pixels[0] and isinstance(pixels[0][0], list) else 1
    if count > MAX_IMAGES:
        raise BadRequest(413, f"batch too large: {count} images, at most {MAX_IMAGES} per request")
    try:
        return pixel_batch(pixels)
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None


def raw_pixels(body: bytes) -> np.ndarray:
    """N x 784 bytes of uint8 pixels as float32 (N, 1, 28, 28); BadRequest when the length or count is wrong."""
    if len(body) % IMAGE_BYTES:
        raise BadRequest(400, f"{RAW_PIXELS}: expected N x {IMAGE_BYTES} bytes (one uint8 per pixel, 28 rows of "
                              f"28 per image), got {len(body)} bytes")
    count = len(body) // IMAGE_BYTES
    if count > MAX_IMAGES:
        raise BadRequest(413, f"batch too large: {count} images, at most {MAX_IMAGES} per request")
    return pixel_batch(np.frombuffer(body, np.uint8).reshape(count, 28, 28))


def prediction_rows(frame) -> list[dict]:
    """The model's frame as the answer's rows, probabilities rounded to 6 decimals (in one numpy call)."""
    probabilities = np.round(frame[DIGIT_COLUMNS].to_numpy(np.float64), 6).tolist()
    return [{"digit": digit, "probability": max(p), "probabilities": p}
            for digit, p in zip(frame["digit"].tolist(), probabilities, strict=True)]


def build_app(tracking_uri: str, model_uri: str, num_cpus: float = 1.0, follow_s: float = 30.0,
              max_batch_size: int = 64):
    """The Serve application, ready for ``serve.run``; a served alias is polled every ``follow_s`` seconds
    (0: never) and a new version swapped in without dropping requests (mnist_job/serving/champion.py)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from ray import serve

    api = FastAPI(title="MNIST digits")

    @serve.deployment(ray_actor_options={"num_cpus": num_cpus}, max_ongoing_requests=256)
    @serve.ingress(api)
    class DigitClassifier:
        def __init__(self):
            import torch

            # MLflow and torch load in the replica only: the CLI imports this module (1.3 s saved there)
            from mnist_job.serving.champion import ServedModel

            torch.set_num_threads(max(1, int(num_cpus)))
            self.served = ServedModel(tracking_uri, model_uri, follow_s)
            self.model_uri = model_uri

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=0.005)
        async def classify(self, batches: list[np.ndarray]) -> list[dict]:
            loaded = self.served.current  # one version for the whole batch, whatever is swapped in meanwhile
            rows = prediction_rows(loaded.model.predict(np.concatenate(batches)))
            out, start = [], 0
            for batch in batches:
                out.append({"version": loaded.version, "predictions": rows[start : start + len(batch)]})
                start += len(batch)
            return out

        @api.get("/healthz")
        def healthz(self):
            return {"status": "ok", "model": self.model_uri, "version": self.served.current.version}

        @api.get("/", response_class=HTMLResponse)
        def page(self):
            return PAGE.read_text()

        @api.post("/predict")
        async def predict(self, request: Request):
            # Read on past the limit without keeping it: a client still sending when the answer
            # comes would see a broken pipe instead of the 413 that says why.
            body, size = bytearray(), 0
            async for chunk in request.stream():
                size += len(chunk)
                if size <= MAX_BODY_BYTES:
                    body += chunk
            if size > MAX_BODY_BYTES:
                return JSONResponse({"error": f"body too large: {size} bytes, at most {MAX_BODY_BYTES}"}, 413)
            try:
                pixels = parse_request(bytes(body), request.headers.get("content-type", ""))
            except BadRequest as exc:
                return JSONResponse({"error": str(exc)}, exc.status)
            answer = {"model": self.model_uri, **await self.classify(pixels)}
            return Response(orjson.dumps(answer), media_type="application/json")

    return DigitClassifier.bind()


def serve_forever(runtime, tracking_uri: str, model_uri: str, host: str, port: int, num_cpus: float,
                  follow_s: float = 30.0, ready_file: Path | None = None) -> None:
    """Start Serve on the Ray cluster (RAY_ADDRESS, or a local one) and block until interrupted."""
    import time

    from ray import serve

    init_ray(runtime)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(tracking_uri, model_uri, num_cpus, follow_s), name="mnist", route_prefix="/")
    logger.info(f"serving {model_uri} on http://{host}:{port}/ (POST /predict, GET /healthz, GET /)")
    print(f"serving {model_uri} at http://{host}:{port}/", flush=True)
    if ready_file:
        ready_file.write_text(f"http://{host}:{port}/\n")
    while True:
        time.sleep(3600)


def app_builder(args: dict):
    """The application for a Serve config file (a RayService's serveConfigV2, ``import_path`` this function).

    ``args``: ``model_uri`` (default: the champion of ``model``, itself default mnist-cnn), ``num_cpus``,
    ``follow_champion_s`` (how often a served alias is polled; 0: never).
    MLFLOW_TRACKING_URI comes from the pods' environment (the platform's ConfigMap), read as every entry point
    reads it: ``Runtime.from_env``.
    """
    tracking_uri = Runtime.from_env().tracking_uri
    if not tracking_uri:
        raise ValueError("MLFLOW_TRACKING_URI: not set in the Ray pods' environment; the model cannot be loaded")
    model_uri = args.get("model_uri") or f"models:/{args.get('model', 'mnist-cnn')}@{CHAMPION}"
    return build_app(tracking_uri, model_uri, float(args.get("num_cpus", 1)), float(args.get("follow_champion_s", 30)))
