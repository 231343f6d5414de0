"""Distillation on the one engine: logit KD (logit_kd), DistilBERT (distilbert), TinyBERT (tinybert);
teacher.py and losses.py are what they share. The driver is pipelines/commands/distill.py."""
