"""Generation: the pipeline (text and tensor entries), the backends that run a model (reference
modules, fused twins, ONNX Runtime) and the exports of what was generated."""

from .backends import Backend, FastBackend, ReferenceBackend
from .pipeline import AttnGANPipeline, PipelineOutput, bundled_model_path

__all__ = ["AttnGANPipeline", "Backend", "FastBackend", "PipelineOutput", "ReferenceBackend", "bundled_model_path"]
