"""The OpenAI-compatible REST door: FastAPI app, one router per resource, schemas apart."""
