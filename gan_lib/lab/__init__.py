"""The speed lab: measuring tools, on the floor above the course library.

:mod:`~gan_lib.lab.bench` (``gan-lib bench``: our train step against the TF
tutorial's), :mod:`~gan_lib.lab.time_to_quality` (``gan-lib bench --to-quality``)
and :mod:`~gan_lib.lab.peer_torch` (the same layers in PyTorch). They use
:mod:`gan_lib.training`, :mod:`gan_lib.runs` and the fast path's switches
(:mod:`gan_lib.training.fast`); nothing in the course library imports them.
Only :mod:`gan_lib.cli` and ``scripts/`` do.
"""
