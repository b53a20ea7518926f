"""Run the shop example (examples/shop): ``python examples/shop_demo.py``.

Try it under the tracer: ``tocsin trace -- python examples/shop_demo.py``.
"""

from shop import checkout

checkout.main([])
