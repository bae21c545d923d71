"""The HTTP edge of the library: the one generation client (OpenAI `/v1/completions`) and the X-ICL chain run
through it. The method modules never import this package; services, the gold filter and the harness do."""
