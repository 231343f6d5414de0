"""The entry points: `python -m pipelines <command>` (cli.py) and one module per command. The only
part of pipelines/ that imports tasks/."""
