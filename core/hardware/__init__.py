"""Hardware probing, no Qt and no torch at import.

- ``nvml``: the one door to NVML (``nvml_query``, ``state``, ``set_backend`` for tests).
- ``gpu``: ``GpuInfo`` per GPU and ``probe_gpus()``.
- ``host``: ``HostInfo`` (RAM, CPU, OS) and ``torch_versions()`` (imports torch lazily).
- ``sampler``: ``MemorySampler``, a background NVML memory sampler.
- ``cards``: ``Card``, the what-if catalog, ``find_card`` / ``resolve_card``.
- ``machine``: ``MachineInfo`` and the ``detect --json`` document.
"""
