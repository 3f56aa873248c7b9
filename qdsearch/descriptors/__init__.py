"""Descriptors: child -> measures, one component per module.

:mod:`~qdsearch.descriptors.base` holds the protocol (name, axes with range and
bins, fit/frozen, compute, export fields, card text) and the registry;
:mod:`~qdsearch.descriptors.measures` gives a campaign's descriptors, axes and
measures. The built-ins: ``complexity`` (:mod:`~qdsearch.descriptors.complexity`),
``topic`` (:mod:`~qdsearch.descriptors.space`, over the regions of
:mod:`~qdsearch.descriptors.regions` or the PCA of :mod:`~qdsearch.descriptors.topic`)
and ``labels`` (:mod:`~qdsearch.descriptors.labels`). This package module imports
nothing, so the descriptor modules can be imported on their own.
"""
