"""`mqspn serve`: the HTTP API and web page of one model (FastAPI + uvicorn, the `serve` extra)."""
from __future__ import annotations

import argparse
import logging

from mqspn.serve.limits import Limits

SERVE_HELP = "pip install 'mqspn[serve]' (FastAPI, uvicorn and python-multipart)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve a model over HTTP, with a web page to try it",
        description="POST /v1/predict, GET /v1/health, GET /v1/model, the web page at / and the API docs at /docs. "
                    f"Needs {SERVE_HELP}.",
    )
    p.add_argument("--model", required=True, help="model directory (e.g. RUN/best)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--max-batch", type=int, default=8, help="most concurrent requests run as one model batch")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long the first request of a batch waits for others to join")
    limits = p.add_argument_group("request limits (larger requests get a 4xx naming the field)")
    defaults = Limits()
    for name, help_text in (("max_image_bytes", "bytes of the uploaded image"),
                            ("max_pixels", "width x height of the image, read from its header before decoding"),
                            ("max_text_chars", "characters of the post's text"),
                            ("max_boxes", "candidate boxes in proposals or boxes"),
                            ("max_proposals_bytes", "bytes of a proposals or boxes file")):
        limits.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name),
                            help=f"{help_text} (default {getattr(defaults, name)})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from mqspn.serve.app import create_app
    except ImportError as err:
        raise ImportError(f"mqspn serve needs the serve extra ({err.name} is missing): {SERVE_HELP}") from None
    from mqspn.predictor import Predictor

    limits = Limits(args.max_image_bytes, args.max_pixels, args.max_text_chars, args.max_boxes, args.max_proposals_bytes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    predictor = Predictor.from_pretrained(args.model, args.device)
    app = create_app(predictor, args.model, limits, args.max_batch, args.max_wait_ms)
    uvicorn.run(app, host=args.host, port=args.port)
    return 0
