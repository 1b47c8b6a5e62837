"""Pipeline parallelism: a scenario's blocks split over ``workload.pipeline_stages`` stages of GPUs, each an
EP group, run micro-batch by micro-batch in a 1F1B (training) or forward (inference) schedule."""

from moesim.pipeline.run import PipelineResult, run_pipeline

__all__ = ["PipelineResult", "run_pipeline"]
