"""Benchmarks, outside the shipped packages: `python -m bench [suite|throughput|sst2|data|distill|compile|
tokenizer|gpu-check|padding-free]` from the checkout's root (`make bench`, `make bench-data`,
`make bench-distill`); results go to docs/BENCHMARKS.md.

    suite       (default) lmforge side by side with its baselines, one file per comparison:
                  mlm   RoBERTa-style MLM (roberta-tiny) vs the HF run_mlm recipe on Trainer (target 1.5x)
                  nsp   BERT MLM+NSP (bert-tiny), lmforge only: no HF baseline trains NSP
                  clm   GPT-2 tiny CLM vs a nanoGPT-style loop with torch.compile (target 1.0x)
                  glue  fine-tuning all-MiniLM-L6-v2 on a GLUE task vs Trainer + DataCollatorWithPadding
                        (target 1.2x samples/s, dev scores within 1 point)
                  qa    SQuAD-format QA fine-tuning (all-MiniLM-L6-v2, else a tiny BERT) on generated data vs
                        Trainer with run_qa.py's windows (target 1.2x samples/s, dev EM / F1 within 2 points)
                  and the MFU of every lmforge pretraining row against this machine's measured bf16
                  matmul peak (mfu.py). Text: WikiText-2 valid+test from ../shared/data/wikitext-2.
                Every side runs --reps times, alternated with the other sides, each run a fresh process
                with the same environment (OMP_NUM_THREADS=--threads, TOKENIZERS_PARALLELISM=false, cold
                caches); medians and ratios; runs/bench/suite.json, suite.md (the table), suite-loss.png.
                How throughput is measured: bench/common.py.
    throughput  training tokens/s of recipes' real train steps in this process (fp32 vs bf16)
    sst2        pretrained tiny BERT vs the same architecture from random init, same SST-2 budget
    data        the data path: preparation MB/s vs run_mlm, pretrain peak RSS, time to first step (data.py)
    distill     teacher vs distilled student on SST-2: accuracy, retention, parameters, latency (distill.py)
    compile     does training.torch_compile pay off, per family (compile.py)
    tokenizer   tokenizer training MB/s per builder (tokenizer.py)
    gpu-check   the GPU evidence for one borrowed H100/H200 slot (gpu_check/, docs/GPU.md; make gpu-check)
    padding-free  GLUE fine-tuning padded vs padding-free vs Trainer at equal batching, with and without
                length grouping (padding_free.py)

The defaults (--steps 40, --reps 3, SST-2 subset of 2,000 rows) are sized for about 14 minutes on
2 free cores; run it on a quiet machine:

    make bench                                   # = python -m bench
    make bench ARGS="--only mlm,clm --reps 5"    # a subset, more repetitions
    make bench ARGS="--glue-task mrpc --glue-examples 0 --glue-epochs 3"   # full MRPC (much longer)
    make bench ARGS="--steps 4 --warmup 2 --log-every 2 --reps 1 --glue-examples 96"   # smoke run

Kept apart from the tests: timings belong in a benchmark, not in a pass/fail unit test.
"""
