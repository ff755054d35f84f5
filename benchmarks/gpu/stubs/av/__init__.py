"""Stand-in for PyAV on the GPU machine only (benchmarks/gpu/sampler.sh puts it on the path when
`import av` fails there): ComfyUI imports av at start-up for its video and audio nodes, which the
sampler benchmark never runs, and the 35 MB wheel does not fit the 64 MiB a device call carries.
Any use raises."""


class _Missing:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("PyAV is not installed on this machine (benchmark stand-in)")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Missing
