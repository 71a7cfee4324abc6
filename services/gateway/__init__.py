"""The HTTP front door: the OpenAI API on top of ``Inference.Generate`` (docs/gateway.md)."""
