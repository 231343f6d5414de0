"""Evaluation batches stay on the host for the whole run; each is copied to the device only while it
is evaluated (pipelines/engine/step.py, DeviceBatches)."""

import torch

from pipelines.engine.step import DeviceBatches


def test_batches_are_copied_to_the_device_one_at_a_time():
    host = [{"input_ids": torch.arange(6).reshape(2, 3), "split": torch.zeros(2), "note": "kept"} for _ in range(3)]
    batches = DeviceBatches(host, torch.device("meta"))  # "meta": a device that is visibly not the host's
    seen = list(batches)
    assert len(batches) == 3 and bool(batches)
    assert all(b["input_ids"].device.type == "meta" and b["note"] == "kept" for b in seen)
    assert all(b["input_ids"].device.type == "cpu" for b in host)  # what the run holds: host tensors
    assert batches[-1]["split"].device.type == "meta" and len(batches[:2]) == 2
    assert not DeviceBatches([], torch.device("cpu"))  # no eval set: falsy, as the empty list was
