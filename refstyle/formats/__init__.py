"""Readers and writers of the weights file formats refstyle understands.

Each reader returns an ordered ``{layer name: (W, b)}`` dict of NumPy arrays,
``W`` of shape ``(out, in, kh, kw)`` and ``b`` of shape ``(out,)``, with Caffe layer
names; :mod:`refstyle.weights` turns that into checked :class:`~refstyle.weights.Weights`.
"""
