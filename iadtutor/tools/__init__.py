"""What is not course material: the ``iadtutor`` command (:mod:`~iadtutor.tools.cli`), reproduction runs
(:mod:`~iadtutor.tools.runs`), the translation study's runner (:mod:`~iadtutor.tools.study`), dataset
downloads and checks (:mod:`~iadtutor.tools.download`), the papers' numbers (:mod:`~iadtutor.tools.papers`),
the toy factory's front-end (:mod:`~iadtutor.tools.toy`; the generator is the package :mod:`toyfactory`),
the book build (:mod:`~iadtutor.tools.book`), notebook cleaning (:mod:`~iadtutor.tools.notebooks`) and the
committed trainings of ``make checkpoints`` (:mod:`~iadtutor.tools.checkpoints`)."""
