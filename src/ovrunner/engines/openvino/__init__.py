"""The OpenVINO GenAI engines: `openvino` (continuous batching, CPU/GPU, `batching`) and
`openvino-npu` (a bounded, serialized pipeline, `npu`), on shared load code (`common`).

The batching engine's pipeline steps in an engine process: `engine_main` is the code that
runs inside it, `engine_client` the server's side of it. `generation` turns engine-neutral
sampling into OpenVINO's `GenerationConfig`; `grammar` compiles JSON schemas before admission.
"""
