"""The live loop's training side: base data + events -> a gated, promoted, published model.

It sits above the stages (:mod:`musicrec.pipeline`) and tracking (:mod:`musicrec.tracking`),
which never import each other: the loop runs the one and hands it the other as an observer.
"""
