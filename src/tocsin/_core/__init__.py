"""The dispatcher core: ``Signal``, its connections, routing tables and delivery.

Private. It imports nothing from the tools, observability or integrations
layers (import-linter contracts in ``pyproject.toml`` keep it so): they plug
in through the extension points of ``hooks``. See docs/design.md.
"""
