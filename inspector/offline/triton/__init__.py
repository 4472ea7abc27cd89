"""Export of identity models to an NVIDIA Triton Inference Server model repository (offline)."""
