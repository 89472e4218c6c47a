"""Reading the datasets: CoNLL text (`conll`), Pascal-VOC boxes (`voc`) and whole splits (`datasets`)."""
from mqspn.data.conll import ConllPost, bio_spans, read_conll
from mqspn.data.datasets import (
    FORMATS,
    GMNER_TYPES,
    GRANULARITIES,
    SPLITS,
    UnmatchedObject,
    dataset_types,
    read_dataset,
    read_split,
    split_file,
    type_problem,
    xml_folder,
)
from mqspn.data.voc import read_voc

__all__ = [
    "ConllPost",
    "FORMATS",
    "GMNER_TYPES",
    "GRANULARITIES",
    "SPLITS",
    "UnmatchedObject",
    "bio_spans",
    "dataset_types",
    "read_conll",
    "read_dataset",
    "read_split",
    "read_voc",
    "split_file",
    "type_problem",
    "xml_folder",
]
