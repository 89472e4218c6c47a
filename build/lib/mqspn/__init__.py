"""mqspn: grounded multimodal NER with MQSPN."""
__version__ = "0.1.0"

from mqspn.types import Entity, Post, Region  # noqa: E402


def __getattr__(name):
    # The predictor imports torch and transformers; keep `import mqspn` light for data-only use.
    if name == "Predictor":
        from mqspn.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'mqspn' has no attribute {name!r}")


__all__ = ["Entity", "Post", "Predictor", "Region", "__version__"]
