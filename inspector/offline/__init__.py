"""Offline work (training, evaluation, reports, export): never imported by the daemon or its workers."""
