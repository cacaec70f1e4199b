"""Method adapters registered in ``r2bench.methods.METHODS``.

``baselines.sanity``: ``random``, ``popularity``, ``item-cooccurrence`` (numpy/scipy
only). Other modules (RecBole models, LLM APIs, TALLRec) import their heavy stacks
themselves; importing this package imports nothing heavy.
"""
