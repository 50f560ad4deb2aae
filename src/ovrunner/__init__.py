"""ovrunner: an OpenAI-compatible local model runner on OpenVINO GenAI."""

__version__ = "0.1.0"
