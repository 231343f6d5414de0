"""The training engine: one loop for every task (loop.py) and what it owns: the optimizer step's
statistics, optimizers, compile, checkpoints, resume, preemption, FLOPs and the launch check."""
