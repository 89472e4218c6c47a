"""The HTTP app: `POST /v1/predict`, `GET /v1/health`, `GET /v1/model`, the web page at `/` and its
example posts. FastAPI serves its own OpenAPI docs at `/docs`.

Request checks run in a worker thread of the event loop (image decoding and proposals are CPU work);
the model runs in the `Batcher`'s single thread, which groups concurrent requests into one batch.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import itertools
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from mqspn.predictions import entity_to_json
from mqspn.predictor import Predictor
from mqspn.serve.batcher import Batcher
from mqspn.serve.examples import example_posts
from mqspn.serve.inputs import JSON_KEYS, ModelNeeds, Upload, from_form, from_json
from mqspn.serve.limits import Limits, RequestError, check_size, parse_json
from mqspn.types import Post

log = logging.getLogger("mqspn.serve")

#: The request body of `POST /v1/predict`, for the OpenAPI docs (the handler reads the body itself,
#: so that every problem is one of our field-naming errors rather than a generic validation list).
PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["text"], "properties": {
        "text": {"type": "string", "description": "the post (words split on white space)"},
        "image": {"type": "string", "format": "binary", "description": "the post's picture (JPEG, PNG, WEBP, GIF, BMP)"},
        "proposals": {"type": "string", "format": "binary", "description": "VinVL .npz file of the image"},
        "boxes": {"type": "string", "format": "binary", "description": "boxes JSON file [[x1, y1, x2, y2], ...]"},
    }}},
    "application/json": {"schema": {"type": "object", "required": ["text"], "properties": {
        "text": {"type": "string"},
        "image_base64": {"type": "string", "description": "the picture, base64 (a data: URL is fine)"},
        "boxes": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}},
    }}},
}}}


def model_id(directory: Path) -> str:
    """The folder name and the start of the weights' SHA-256: two different models never share an id."""
    digest = hashlib.sha256()
    with (directory / "model.safetensors").open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{directory.resolve().name}@{digest.hexdigest()[:12]}"


def model_info(predictor: Predictor, directory: Path) -> dict[str, Any]:
    """What `GET /v1/model` tells: the model's facts and its model card (README.md of the folder)."""
    cfg = predictor.model.config
    card_path = directory / "README.md"
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    facts = dict(re.findall(r"^- \*\*(.+?)\*\*: (.*)$", card, re.MULTILINE))
    return {"id": model_id(directory), "types": list(cfg.types), "text_encoder": cfg.text_encoder,
            "vision_encoder": cfg.vision_encoder, "regions": predictor.mode, "top_k": predictor.top_k,
            "training_data": predictor.training_data or facts.get("dataset"), "card": card}


def _error(err: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(err), "field": err.field}, status_code=err.status)


def create_app(predictor: Predictor, directory: str | Path, limits: Limits = Limits(), max_batch: int = 8,
               max_wait_ms: float = 5.0) -> FastAPI:
    """The app serving `predictor`, loaded from `directory` (for the model id and card)."""
    info = model_info(predictor, Path(directory))
    needs = ModelNeeds(predictor.mode, predictor.top_k)
    post_ids = itertools.count()

    def run(items: Sequence[dict]) -> list[tuple[Post, float, int]]:
        start = time.perf_counter()
        posts = predictor.predict_many(items)
        seconds = time.perf_counter() - start
        return [(post, seconds, len(items)) for post in posts]

    batcher: Batcher[dict, tuple[Post, float, int]] = Batcher(run, max_batch, max_wait_ms)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        log.info("serving %s on %s (max batch %d, max wait %.1f ms)", info["id"], predictor.device, max_batch, max_wait_ms)
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(title="mqspn", version="1", lifespan=lifespan,
                  description="Grounded multimodal NER (MQSPN): entities of a post and their boxes in its image.")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(importlib.resources.files("mqspn.serve").joinpath("page.html").read_text(encoding="utf-8"))

    @app.get("/v1/health")
    def health() -> dict:
        return {"status": "ok", "model_loaded": True, "device": str(predictor.device), "model": info["id"],
                "queued": batcher.pending}

    @app.get("/v1/model")
    def model() -> dict:
        return info

    @app.get("/v1/examples")
    def examples() -> list[dict]:
        """Synthetic example posts for the page: text, image URL and detector boxes."""
        return [{"id": e.id, "text": e.text, "image_url": f"/v1/examples/{e.id}.jpg", "boxes": e.boxes}
                for e in example_posts().values()]

    @app.get("/v1/examples/{example_id}.jpg", include_in_schema=False)
    def example_image(example_id: str) -> Response:
        example = example_posts().get(example_id)
        if example is None:
            return _error(RequestError("example_id", f"example_id: no example {example_id!r}", 404))
        return Response(example.jpeg, media_type="image/jpeg")

    @app.post("/v1/predict", openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> JSONResponse:
        """Entities of one post: word span, surface text, type, box (or null: not in the image), score."""
        start = time.perf_counter()
        try:
            item = await read_request(request, needs, limits)
            item["post_id"] = f"request-{next(post_ids)}"
            post, model_seconds, batch_size = await batcher.submit(item)
        except RequestError as err:
            return _error(err)
        except ValueError as err:  # an input problem only the model's example builder saw
            return _error(RequestError("input", str(err)))
        except Exception:  # noqa: BLE001 - the server must keep serving; the log has the traceback
            error_id = uuid.uuid4().hex[:12]
            log.exception("predict failed, error id %s", error_id)
            return JSONResponse({"error": f"the model failed on this request (error id {error_id}); "
                                          "the server log has the details", "error_id": error_id}, status_code=500)
        return JSONResponse({
            "model": info["id"],
            "words": post.words,
            "entities": [{"text": e.text(post.words), **entity_to_json(e)} for e in post.entities],
            "timing": {"total_ms": round(1000 * (time.perf_counter() - start), 2),
                       "model_ms": round(1000 * model_seconds, 2), "batch_size": batch_size},
        })

    return app


async def read_request(request: Request, needs: ModelNeeds, limits: Limits) -> dict:
    """Parse and check a predict request (multipart or JSON) into `Predictor.predict` arguments."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limits.max_json_bytes + limits.max_proposals_bytes:
            raise RequestError("body", f"body: {declared} bytes, more than this server takes "
                                       f"({limits.max_json_bytes + limits.max_proposals_bytes})", 413)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        body = check_size("body", await request.body(), limits.max_json_bytes)
        return await asyncio.to_thread(from_json, parse_json("body", body), needs, limits)
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=3, max_fields=4)
        except HTTPException as err:  # Starlette's own multipart limits and parse errors
            raise RequestError("body", f"body: {err.detail}", 400) from None
        try:
            unknown = sorted(set(form) - {"text", "image", "proposals", "boxes"})
            if unknown:
                raise RequestError(unknown[0], f"{unknown[0]}: unknown field; a form has text, image, proposals, boxes", 400)
            text = form.get("text")
            if text is None:
                raise RequestError("text", "text: missing; send the post's text", 400)
            uploads = {name: await _upload(form.get(name), name, limits) for name in ("image", "proposals", "boxes")}
            return await asyncio.to_thread(from_form, text, uploads["image"], uploads["proposals"], uploads["boxes"],
                                           needs, limits)
        finally:
            await form.close()
    raise RequestError("body", f"body: send multipart/form-data (text, image, proposals, boxes) or application/json "
                               f"({', '.join(JSON_KEYS)}), got {kind or 'no content type'}", 415)


async def _upload(value: Any, field: str, limits: Limits) -> Optional[Upload]:
    """Read an uploaded file, never more than its limit plus one byte."""
    if value is None:
        return None
    if not isinstance(value, UploadFile):
        raise RequestError(field, f"{field}: must be a file upload, got a text field", 400)
    limit = limits.max_image_bytes if field == "image" else limits.max_proposals_bytes
    return Upload(value.filename or "", check_size(field, await value.read(limit + 1), limit))
