"""`make gpu-check` (`python -m bench.gpu_check`): the GPU evidence in one command, sized for a
borrowed single-H100/H200 slot (about 8 minutes). docs/GPU.md says what it measures and holds the
recorded table.

Sections, each in its own time box; a failing one records its error and the next one runs:
    peak          the card's bf16 matmul peak, measured in this run (the MFU denominator)
    throughput    bert-base (seq 128 and 512), roberta-base, gpt2-small, t5-small at bf16: engine
                  train_step tokens/s, MFU, peak GPU memory, SDPA vs eager attention
    compile       the same with torch.compile (training.torch_compile), SDPA
    distributed   30 steps each under DeepSpeed ZeRO-2, ZeRO-3 and FSDP on the one GPU; each export
                  reloaded by plain transformers must give the trained model's outputs
    resume        a run SIGKILLed after its first checkpoint, resumed: the same loss curve
    padding_free  SST-2 fine-tuning, training.padding_free=true vs false

--smoke runs the same code at toy sizes on a CPU (tests/bench/test_gpu_check.py). Everything
runs in child processes (bench/gpu_check/worker.py, the CLI through bench/gpu_check/probe.py):
the parent never touches the GPU, so one crash costs one job.
"""
