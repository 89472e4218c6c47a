"""A synthetic grounded NER benchmark in the Twitter-GMNER layout, made on the spot with no download.

`world` invents entities with looks and tweet-like posts, `render` draws images and simulates a
detector, `generate` writes `txt/`, `xml/`, `images/` and `proposals/` (`mqspn synth --out DIR`).
"""
from mqspn.synth.generate import generate
from mqspn.synth.world import TYPES, World, WorldEntity, build_world

__all__ = ["TYPES", "World", "WorldEntity", "build_world", "generate"]
