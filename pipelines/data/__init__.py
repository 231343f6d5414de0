"""The data path: sources, the default corpus, tokenization, shards, sampling and loading."""
