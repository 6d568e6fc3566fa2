"""msa_lib: Mixture-of-Experts multimodal sentiment analysis, the library behind the reproducibility book.

Layers (each imports only the ones above it in this list):
data -> features -> metrics -> nn -> models -> training -> experiments -> reporting.
"""
__version__ = "0.1.0"
