"""A Django app for tests/test_sqlalchemy_parity.py: models mirrored in SQLAlchemy there."""
