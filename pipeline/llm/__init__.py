"""LLM extraction: the output schema, prompts, parsing and merging with the lexicon result."""
