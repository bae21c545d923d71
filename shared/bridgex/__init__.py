"""BridgeX core library: languages, data readers, prompts, profiling, neuron sets, HSIC, ranking, artifacts.

Pure library: no Redis, no HTTP servers (the generation *client* lives in `bridgex.generation.client`).
"""

__version__ = "0.1.0"
METHOD_VERSION = "bridgex-icl/1"
