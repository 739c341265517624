"""The lexicon backend's readers: one small reader per kind of fact, composed in `pipeline.lexicon`.

A reader takes one item of a page (a row's text in its section, with the row's lines and
boxes) and returns the entities it reads there; it sets `ctx.claimed` when it read the whole
item, so the readers after it in the list leave the item alone.
"""
