"""`GET /v1/models`: the one served model, in OpenAI's list format."""
