"""OpenAI-style graders: specs, templates, metrics, the python sandbox, model judges."""
