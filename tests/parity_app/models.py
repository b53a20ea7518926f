"""Django models whose SQLAlchemy twins live in tests/test_sqlalchemy_parity.py."""

from __future__ import annotations

from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "parity_app"

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class Book(models.Model):
    title = models.CharField(max_length=50)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")

    class Meta:
        app_label = "parity_app"

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class Tag(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "parity_app"

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class Article(models.Model):
    title = models.CharField(max_length=50)
    tags = models.ManyToManyField(Tag, related_name="articles")

    class Meta:
        app_label = "parity_app"

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"
