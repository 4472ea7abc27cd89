"""Offline texture work: datasets, feature selection, classifiers, experiments, reports, training and their CLI."""
