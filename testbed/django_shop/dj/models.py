"""The Django shop's models, over tables testbed/seed.sql creates."""

from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)

    class Meta:
        db_table = "dj_author"
        managed = False


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)

    class Meta:
        db_table = "dj_book"
        managed = False


class ReviewFields(models.Model):
    book = models.ForeignKey(Book, on_delete=models.CASCADE)
    body = models.TextField()

    class Meta:
        abstract = True


class Review(ReviewFields):
    class Meta:
        db_table = "dj_review"
        managed = False


class IndexedReview(ReviewFields):
    """The same reviews, with a trigram index on `upper(body)` (seed.sql)."""

    class Meta:
        db_table = "dj_review_indexed"
        managed = False


class Event(models.Model):
    kind = models.TextField()
    score = models.IntegerField()
    payload = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "events"
        managed = False
