"""Data preparation: fetch registries data, build dictionaries, splits and monolingual text.

`bridgex.data.ensure.ensure_data` gathers only what a request lacks (the services call it on first use);
`bridgex.data.prepare.prepare` builds everything asked for; `bridgex.data.layout.DataLayout` reads the result.
"""
