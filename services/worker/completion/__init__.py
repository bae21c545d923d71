"""OpenAI completions endpoint: protocol (pydantic models), serving (behaviour), api_router (routes)."""
