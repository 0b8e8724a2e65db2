"""iadtutor — the helper package of an interactive course on industrial anomaly detection.

One module per idea of the course:

* :mod:`iadtutor.data` — datasets on disk (MVTec AD, LOCO, VisA, BTAD, MPDD layouts)
* :mod:`toyfactory` — the toy factory, a deterministic synthetic dataset (its own package)
* :mod:`iadtutor.backbones` — pretrained feature extractors and their weights
* :mod:`iadtutor.embed` — image -> patch embedding
* :mod:`iadtutor.knn` — nearest-neighbour scoring: SPADE, LWinNN, PatchCore, LDKNN
* :mod:`iadtutor.metrics` — image / pixel AUROC, AUPRO, bootstrap intervals
* :mod:`iadtutor.ulsad`, :mod:`iadtutor.defectmaker` — the two trained methods
* :mod:`iadtutor.viz`, :mod:`iadtutor.viz.knn` — figures and interactive apps for the notebooks
* :mod:`iadtutor.pipeline`, :mod:`iadtutor.tools.runs`, :mod:`iadtutor.tools.cli` — evaluations, sweeps, the command
"""

__version__ = "0.1.0"
