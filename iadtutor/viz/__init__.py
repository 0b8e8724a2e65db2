"""Every figure and interactive app of the course: :mod:`iadtutor.viz.core` (shared pieces and the app
framework), then one module per chapter group: :mod:`~iadtutor.viz.knn` (notebooks 02, 03 and 05),
:mod:`~iadtutor.viz.ulsad` (05), :mod:`~iadtutor.viz.reb` (06), :mod:`~iadtutor.viz.study` (07).
Figures import the course's ideas (``iadtutor.*``), never ``iadtutor.tools``."""
