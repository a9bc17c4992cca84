"""OpenAI wire schemas, fields in the order of OpenAI's docs; tunesmith extensions fenced off."""
