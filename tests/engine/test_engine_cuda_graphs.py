"""CUDA graphs beside pycuda go through cuda-python's driver API: the calls, their order and how
their (CUresult, value) tuples are unpacked, against a stand-in of that API (no GPU here)."""
from __future__ import annotations

import enum
import types

import pytest

from spvit_deploy.engine.runner import PyCudaMemory


class CUresult(enum.IntEnum):  # cuda-python's enum: 0 is success
    CUDA_SUCCESS = 0
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901


def fake_driver(calls: list, fail: str = "") -> types.SimpleNamespace:
    def call(name: str, *values: object):
        def fn(*args: object) -> tuple:
            calls.append((name, args))
            err = CUresult.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED if name == fail else CUresult.CUDA_SUCCESS
            return (err, *values)
        return fn

    return types.SimpleNamespace(
        CUstream=lambda handle: ("stream", handle),
        CUstreamCaptureMode=types.SimpleNamespace(CU_STREAM_CAPTURE_MODE_THREAD_LOCAL="thread-local"),
        cuStreamBeginCapture=call("begin"), cuStreamEndCapture=call("end", "graph"),
        cuGraphInstantiateWithFlags=call("instantiate", "exec"), cuGraphLaunch=call("launch"),
    )


def memory(calls: list, fail: str = "") -> PyCudaMemory:
    mem = PyCudaMemory.__new__(PyCudaMemory)  # no pycuda here: only the graph path is under test
    mem.cu, mem.stream = fake_driver(calls, fail), types.SimpleNamespace(handle=1234)
    return mem


def test_capture_instantiate_and_replay_on_pycudas_stream() -> None:
    calls: list = []
    mem = memory(calls)
    graph = mem.capture(lambda: calls.append(("enqueue", ())) or True)
    mem.replay(graph)
    assert [c[0] for c in calls] == ["begin", "enqueue", "end", "instantiate", "launch"]
    assert calls[0][1] == (("stream", 1234), "thread-local")
    assert calls[3][1] == ("graph", 0) and calls[4][1] == ("exec", ("stream", 1234))


@pytest.mark.parametrize("fail", ["begin", "end", "instantiate"])
def test_a_failed_driver_call_raises_instead_of_replaying_nothing(fail: str) -> None:
    calls: list = []
    with pytest.raises(RuntimeError, match="CUDA driver call failed"):
        memory(calls, fail).capture(lambda: True)
    if fail != "begin":  # capture is always ended once begun
        assert "end" in [c[0] for c in calls]


def test_enqueue_failure_during_capture_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="enqueue failed during capture"):
        memory([]).capture(lambda: False)
