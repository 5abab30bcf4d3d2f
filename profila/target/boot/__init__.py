"""Directory profila puts first on the target's PYTHONPATH: holds only ``sitecustomize``.

(This ``__init__`` only makes the directory part of the installed package; the target never
imports it.)
"""
