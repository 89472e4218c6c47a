"""`mqspn serve`: every endpoint, every request limit and bad input (status and named field), both ways
in (multipart and JSON), batching that answers as one-by-one prediction does, and a model error that
leaves the server serving. A tiny random model saved to a temp folder; FastAPI's TestClient."""
from __future__ import annotations

import base64
import io
import json
import logging
import struct
import threading
import zlib

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mqspn[serve]'")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from helpers_model import FEATURE_DIM, scene, tiny_model  # noqa: E402
from mqspn.checkpoint import save_pretrained  # noqa: E402
from mqspn.cli import main  # noqa: E402
from mqspn.predictions import entity_to_json  # noqa: E402
from mqspn.predictor import Predictor  # noqa: E402
from mqspn.serve import inputs  # noqa: E402
from mqspn.serve.app import create_app  # noqa: E402
from mqspn.serve.batcher import Batcher  # noqa: E402
from mqspn.serve.limits import Limits  # noqa: E402

BOXES = [[0, 0, 40, 30], [50, 20, 110, 80], [10, 40, 60, 85]]
TEXT = "Jordan scored 30 points in Chicago"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_pretrained(tiny_model(seed=0).eval(), tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor.from_pretrained(model_dir, "cpu")


@pytest.fixture
def serve(predictor, model_dir):
    """serve(**options) -> a started TestClient of an app with those `create_app` options / limits."""
    clients = []

    def start(max_batch: int = 8, max_wait_ms: float = 5.0, **limits) -> TestClient:
        client = TestClient(create_app(predictor, model_dir, Limits(**limits), max_batch, max_wait_ms))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(serve):
    return serve()


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def form(text: str = TEXT, image: bytes | None = None, boxes=BOXES, **files) -> dict:
    """httpx keyword arguments of a multipart predict request; `boxes` is a list or the file's raw bytes."""
    parts = {"image": ("post.png", png(scene()) if image is None else image, "image/png")}
    if boxes is not None:
        raw = boxes if isinstance(boxes, bytes) else json.dumps(boxes).encode()
        parts["boxes"] = ("boxes.json", raw, "application/json")
    parts.update(files)
    return {"data": {"text": text}, "files": parts}


def expected(predictor: Predictor, text: str = TEXT, image=None, boxes=BOXES) -> list[dict]:
    post = predictor.predict(text, image=image or scene(), proposals=boxes)
    return [{"text": e.text(post.words), **entity_to_json(e)} for e in post.entities]


def without_scores(entities: list[dict]) -> tuple[list[dict], list[float]]:
    """Entities minus their scores, and the scores: a batch pads its posts, and padded attention sums in
    another order, so a score may differ from the single post's in the last float bits."""
    return [{k: v for k, v in e.items() if k != "score"} for e in entities], [e["score"] for e in entities]


def assert_error(response, status: int, field: str) -> dict:
    body = response.json()
    assert response.status_code == status, body
    assert body["field"] == field and field in body["error"], body
    assert "Traceback" not in body["error"]
    return body


# -------------------------------------------------------------------------------------- the endpoints


def test_health_model_docs_and_page(client, model_dir):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["model_loaded"] and health["device"] == "cpu"
    info = client.get("/v1/model").json()
    assert health["model"] == info["id"] and info["id"].startswith("tiny@")
    assert info["types"] == ["PER", "LOC", "ORG", "OTHER"] and info["top_k"] == 10
    assert (info["text_encoder"], info["vision_encoder"]) == ("tiny", "cnn")
    assert info["card"] == (model_dir / "README.md").read_text()
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html") and 'id="predict"' in page.text


def test_examples_are_synthetic_posts_with_images_and_boxes(client):
    examples = client.get("/v1/examples").json()
    assert len(examples) == 3
    for example in examples:
        image = Image.open(io.BytesIO(client.get(example["image_url"]).content))
        assert image.format == "JPEG" and example["text"] and example["boxes"]
        assert all(0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height for x1, y1, x2, y2 in example["boxes"])
    assert_error(client.get("/v1/examples/nothing.jpg"), 404, "example_id")


def test_multipart_predict_equals_the_predictor(client, predictor):
    body = client.post("/v1/predict", **form()).json()
    assert body["entities"] == expected(predictor) and body["entities"]
    assert body["words"] == TEXT.split() and body["model"] == client.get("/v1/health").json()["model"]
    assert body["timing"]["batch_size"] == 1 and body["timing"]["total_ms"] >= body["timing"]["model_ms"] >= 0
    assert all(e["box"] is None or e["box"] in BOXES for e in body["entities"])


def test_json_body_predict_equals_multipart(client):
    image = base64.b64encode(png(scene())).decode()
    by_json = client.post("/v1/predict", json={"text": TEXT, "image_base64": image, "boxes": BOXES}).json()
    data_url = client.post("/v1/predict", json={"text": TEXT, "image_base64": f"data:image/png;base64,{image}",
                                                "boxes": BOXES}).json()
    assert by_json["entities"] == data_url["entities"] == client.post("/v1/predict", **form()).json()["entities"]


def test_vinvl_proposals_file(client, predictor, tmp_path):
    npz = tmp_path / "post.jpg.npz"
    np.savez(npz, bounding_boxes=np.array(BOXES, dtype=np.float32), scores=np.array([0.9, 0.8, 0.7]))
    body = client.post("/v1/predict", **form(boxes=None, proposals=("post.jpg.npz", npz.read_bytes()))).json()
    assert body["entities"] == expected(predictor, boxes=npz)


def test_without_proposals_the_built_in_proposer_is_used_or_named(client, predictor, monkeypatch):
    class NoOpenCV:
        def __init__(self, *args):
            raise ImportError("no cv2")

    monkeypatch.setattr(inputs, "SelectiveSearch", NoOpenCV)
    body = assert_error(client.post("/v1/predict", **form(boxes=None)), 422, "proposals")
    assert "opencv" in body["error"] and "boxes" in body["error"]

    class FixedProposer:
        def __init__(self, image_dir, top_k):
            self.top_k = top_k

        def propose(self, image):
            return inputs.boxes_from_list(BOXES, "proposer", Limits())

    monkeypatch.setattr(inputs, "SelectiveSearch", FixedProposer)
    assert client.post("/v1/predict", **form(boxes=None)).json()["entities"] == expected(predictor)


def test_a_text_only_model_needs_no_image(tmp_path):
    directory = save_pretrained(tiny_model(seed=1, vision_encoder="none").eval(), tmp_path / "text-only")
    predictor = Predictor.from_pretrained(directory, "cpu")
    with TestClient(create_app(predictor, directory)) as client:
        assert client.get("/v1/model").json()["regions"] == "none"
        body = client.post("/v1/predict", data={"text": TEXT}).json()
        by_json = client.post("/v1/predict", json={"text": TEXT}).json()
    post = predictor.predict(TEXT)
    assert body["entities"] == by_json["entities"] == [{"text": e.text(post.words), **entity_to_json(e)} for e in post.entities]
    assert all(e["box"] is None for e in body["entities"])


def test_a_detector_features_model_reads_them_from_the_proposals_file(tmp_path):
    model = tiny_model(seed=0, vision_encoder="features", feature_dim=FEATURE_DIM).eval()
    directory = save_pretrained(model, tmp_path / "features")
    predictor = Predictor.from_pretrained(directory, "cpu")
    npz = tmp_path / "post.jpg.npz"
    np.savez(npz, bounding_boxes=np.array(BOXES, dtype=np.float32), scores=np.array([0.9, 0.8, 0.7]),
             box_features=np.random.default_rng(0).random((3, FEATURE_DIM)).astype(np.float32))
    with TestClient(create_app(predictor, directory)) as client:
        body = client.post("/v1/predict", **form(boxes=None, proposals=("post.jpg.npz", npz.read_bytes()))).json()
        assert_error(client.post("/v1/predict", **form()), 422, "proposals")
    post = predictor.predict(TEXT, proposals=npz)
    assert body["entities"] == [{"text": e.text(post.words), **entity_to_json(e)} for e in post.entities]


# ------------------------------------------------------------------------------- limits and bad input


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none: decoding it fails, reading its header works."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"not deflate data") + chunk(b"IEND", b"")


LIMIT_CASES = {
    "image bytes": (dict(max_image_bytes=1000), form(image=png(scene((300, 300)))), 413, "image"),
    "pixels, checked before decoding": (dict(max_pixels=10_000), form(image=png_header(2000, 2000)), 413, "image"),
    "pixels past PIL's bomb limit": ({}, form(image=png_header(100_000, 100_000)), 413, "image"),
    "text length": (dict(max_text_chars=20), form(text="word " * 10), 422, "text"),
    "boxes in a boxes file": (dict(max_boxes=2), form(), 422, "boxes"),
    "boxes in a JSON body": (dict(max_boxes=2), {"json": {"text": TEXT, "image_base64": base64.b64encode(png(scene())).decode(),
                                                         "boxes": BOXES}}, 422, "boxes"),
    "proposals file bytes": (dict(max_proposals_bytes=10), form(), 413, "boxes"),
}


@pytest.mark.parametrize("limits, request_kwargs, status, field", LIMIT_CASES.values(), ids=LIMIT_CASES.keys())
def test_each_limit_is_a_4xx_naming_the_field(serve, limits, request_kwargs, status, field):
    assert_error(serve(**limits).post("/v1/predict", **request_kwargs), status, field)


def test_a_real_decompression_bomb_is_refused_without_decoding(serve, monkeypatch):
    bomb = png(Image.new("1", (4000, 4000)))  # 16 Mpixel of zeros: a few KB of PNG
    assert len(bomb) < 10_000

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "convert", no_decoding)
    assert_error(serve(max_pixels=1_000_000).post("/v1/predict", **form(image=bomb)), 413, "image")


BAD_INPUTS = {
    "empty text": (form(text="   "), 422, "text"),
    "missing text": ({"files": form()["files"]}, 400, "text"),
    "empty text in JSON": ({"json": {"text": ""}}, 422, "text"),
    "text not a string": ({"json": {"text": 3}}, 422, "text"),
    "unsupported format": (form(image=png(scene(), "TIFF")), 415, "image"),
    "not an image": (form(image=b"GIF89a but not really"), 415, "image"),
    "truncated image": (form(image=png(scene())[:200]), 422, "image"),
    "no image for a crop model": ({"data": {"text": TEXT}}, 422, "image"),
    "image is text": ({"data": {"text": TEXT, "image": "post.png"}}, 400, "image"),
    "malformed JSON body": ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "body"),
    "JSON body not an object": ({"json": [TEXT]}, 400, "body"),
    "unknown JSON key": ({"json": {"text": TEXT, "picture": "x"}}, 400, "picture"),
    "malformed base64": ({"json": {"text": TEXT, "image_base64": "no%base64!"}}, 400, "image_base64"),
    "base64 not an image": ({"json": {"text": TEXT, "image_base64": base64.b64encode(b"hello").decode()}}, 415,
                            "image_base64"),
    "malformed boxes file": (form(boxes=b"[[0, 0,"), 400, "boxes"),
    "inverted box": (form(boxes=[[0, 0, 40, 30], [50, 20, 10, 80]]), 422, "boxes"),
    "box of strings in JSON": ({"json": {"text": TEXT, "image_base64": base64.b64encode(png(scene())).decode(),
                                         "boxes": [["0", "0", "4", "4"]]}}, 422, "boxes"),
    "broken proposals file": (form(boxes=None, proposals=("p.npz", b"PK not a zip")), 422, "proposals"),
    "proposals and boxes": (form(proposals=("p.npz", b"x")), 400, "boxes"),
    "unknown form field": (form(picture=("x.png", b"x")), 400, "picture"),
    "wrong content type": ({"content": TEXT, "headers": {"content-type": "text/plain"}}, 415, "body"),
}


@pytest.mark.parametrize("request_kwargs, status, field", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_a_4xx_naming_the_field(client, request_kwargs, status, field):
    body = assert_error(client.post("/v1/predict", **request_kwargs), status, field)
    assert "mqspn-serve-" not in body["error"], "a temp file path leaked into the message"


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        Limits(max_pixels=0)


# ------------------------------------------------------------------------- batching and model errors


def test_concurrent_requests_are_batched_and_answer_as_one_by_one(serve, predictor, monkeypatch):
    """The first request holds the model until the others are queued, so they must share one batch."""
    client = serve(max_batch=8, max_wait_ms=50)
    posts = [(f"{TEXT} number {i}", scene(seed=i), BOXES[: 1 + i % 3]) for i in range(5)]
    singles = [expected(predictor, text, image, boxes) for text, image, boxes in posts]
    entered, release = threading.Event(), threading.Event()
    original = predictor.predict_many

    def gated(items):
        entered.set()
        assert release.wait(60), "the test never released the model"
        return original(items)

    monkeypatch.setattr(predictor, "predict_many", gated)
    results: dict[int, dict] = {}

    def post(i: int) -> None:
        text, image, boxes = posts[i]
        results[i] = client.post("/v1/predict", **form(text, png(image), boxes)).json()

    blocker = threading.Thread(target=post, args=(0,))
    blocker.start()
    assert entered.wait(60)
    others = [threading.Thread(target=post, args=(i,)) for i in range(1, len(posts))]
    for thread in others:
        thread.start()
    for _ in range(600):  # wait (bounded) until all of them are queued behind the blocker
        if client.get("/v1/health").json()["queued"] == len(others):
            break
        threading.Event().wait(0.05)
    assert client.get("/v1/health").json()["queued"] == len(others)
    release.set()
    for thread in [blocker, *others]:
        thread.join(60)
    assert [results[i]["timing"]["batch_size"] for i in range(len(posts))] == [1] + [len(others)] * len(others)
    for i, single in enumerate(singles):
        (got, got_scores), (want, want_scores) = without_scores(results[i]["entities"]), without_scores(single)
        assert got == want and got_scores == pytest.approx(want_scores, abs=1e-5)
    assert any(singles), "no post had an entity: the comparison tested nothing"


def test_predict_many_equals_predict_one_by_one(predictor):
    items = [dict(text=f"{TEXT} {'again ' * i}", image=scene(seed=i), proposals=BOXES[i % 3:], post_id=f"p{i}")
             for i in range(4)]
    together = predictor.predict_many(items)
    alone = [predictor.predict(**item) for item in items]
    for batched, single in zip(together, alone):
        (got, got_scores), (want, want_scores) = (without_scores([entity_to_json(e) for e in p.entities])
                                                  for p in (batched, single))
        assert got == want and got_scores == pytest.approx(want_scores, abs=1e-5)
    with pytest.raises(ValueError, match="its own post_id"):
        predictor.predict_many([items[0], items[0]])


def test_a_failing_batch_is_retried_item_by_item():
    import asyncio

    calls = []

    def run(items):
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("bad item")
        return [item.upper() for item in items]

    batcher = Batcher(run, max_batch=3, max_wait_ms=1000)

    async def main_():
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(x) for x in ("a", "bad", "c")), return_exceptions=True)
        finally:
            batcher.stop()

    first, bad, third = asyncio.run(main_())
    assert (first, third) == ("A", "C") and isinstance(bad, RuntimeError)
    assert calls[0] == ["a", "bad", "c"] and sorted(map(tuple, calls[1:])) == [("a",), ("bad",), ("c",)]


def test_a_model_error_is_a_500_with_an_id_in_the_log_and_the_server_keeps_serving(client, predictor, monkeypatch, caplog):
    def broken(batch):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(predictor.model, "forward", broken)
    with caplog.at_level(logging.ERROR, logger="mqspn.serve"):
        response = client.post("/v1/predict", **form())
    body = response.json()
    assert response.status_code == 500 and body["error_id"] in body["error"]
    assert "simulated" not in body["error"], "internals leaked to the client"
    assert any(body["error_id"] in record.getMessage() for record in caplog.records)
    monkeypatch.undo()
    assert client.post("/v1/predict", **form()).status_code == 200


# --------------------------------------------------------------------------------------------- the CLI


def test_serve_command_is_registered_and_refuses_bad_options(model_dir, capsys):
    assert main(["serve", "--model", str(model_dir), "--max-batch", "0"]) == 2
    assert "max_batch must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--model", str(model_dir), "--max-pixels", "0"]) == 2
    assert "max_pixels must be a positive integer" in capsys.readouterr().err


def test_without_the_serve_extra_the_command_says_what_to_install(model_dir, monkeypatch, capsys):
    import sys

    for name in ("uvicorn", "fastapi", "mqspn.serve.app"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes `import` fail
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "serve" in capsys.readouterr().out
    assert main(["serve", "--model", str(model_dir)]) == 2
    assert "pip install 'mqspn[serve]'" in capsys.readouterr().err
