"""iadtutor — the package under an interactive course on industrial anomaly detection.

Three parts. ``iadtutor/`` holds the course's ideas, one module per idea, in the order the notebooks teach
them (d2l-style: every public name's docstring names its notebook):

======================  ===================================================================  ==========
module                  idea                                                                 notebook
======================  ===================================================================  ==========
:mod:`~iadtutor.data`   datasets on disk (MVTec AD / LOCO, VisA, BTAD, MPDD, KolektorSDD2)   00
``backbones``           pretrained CNNs and their weights (ResNet18, EfficientNet-Lite0)     01
``embed``               image -> patch embedding (taps, 3×3 pooling, resize, concatenate)    01
``patches``             where a patch sits in the image: cells, windows, receptive fields    01-02
``knn``                 kNN scorers: SPADE, LWinNN, PatchCore (+ coreset), KNN, LDKNN        02-03, 05
``metrics``             image / pixel AUROC, AUPRO, sPRO, F1, bootstrap intervals            04 (01-08)
``density``             the memory bank's local densities and one search for every K         05
``pipeline``            the one evaluation path and the METHODS table; the chapters' sweeps  02-08
``defectmaker``         DefectMaker synthetic defects, fine-tuning, REB's comparison         06
``ulsad``               ULSAD: local reconstruction + global attention branch                07
======================  ===================================================================  ==========

:mod:`iadtutor.viz` draws them (one module per chapter group, on one shared core); :mod:`iadtutor.tools` is
everything that is not course material (the command line, reproduction runs, downloads, the papers' numbers,
the book). Layers point down only: the ideas never import ``viz`` or ``tools``; ``viz`` never imports
``tools``. The toy factory's generator is its own package, :mod:`toyfactory`.
"""

__version__ = "0.1.0"
