"""One module per stage of the graph; `pipeline.graph` composes them."""
