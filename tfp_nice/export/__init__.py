"""Export to SavedModel: tensors in, tensors out; no tfp_nice needed to load."""

from tfp_nice.export.saved_model import METADATA_FILE, SIGNATURES, export_saved_model

__all__ = ["METADATA_FILE", "SIGNATURES", "export_saved_model"]
