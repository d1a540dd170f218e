"""The Django shop's routes."""

from django.urls import path

from dj import views

urlpatterns = [
    path("health", views.health),
    path("__flush", views.flush),
    path("books/bad", views.books_bad),
    path("books/fixed", views.books_fixed),
    path("reviews/bad", views.reviews_bad),
    path("reviews/fixed", views.reviews_fixed),
    path("events/bad", views.events_bad),
    path("events/fixed", views.events_fixed),
]
