"""The Django shop's views: each scenario's bad route and its fixed twin."""

from django.http import HttpResponse, JsonResponse
from opentelemetry import trace

from dj.models import Book, Event, IndexedReview, Review

BOOKS_PER_PAGE = 50


def health(request):
    return HttpResponse("ok")


def flush(request):
    trace.get_tracer_provider().force_flush()
    return HttpResponse("flushed")


def books_bad(request):
    books = Book.objects.order_by("id")[:BOOKS_PER_PAGE]
    return JsonResponse({"books": [{"title": b.title, "author": b.author.name} for b in books]})


def books_fixed(request):
    books = Book.objects.select_related("author").order_by("id")[:BOOKS_PER_PAGE]
    return JsonResponse({"books": [{"title": b.title, "author": b.author.name} for b in books]})


def reviews_bad(request):
    found = Review.objects.filter(body__icontains=request.GET.get("q", "zebra"))[:20]
    return JsonResponse({"reviews": [r.body for r in found]})


def reviews_fixed(request):
    found = IndexedReview.objects.filter(body__icontains=request.GET.get("q", "zebra"))[:20]
    return JsonResponse({"reviews": [r.body for r in found]})


def events_bad(request):
    return JsonResponse({"count": len(Event.objects.all())})


def events_fixed(request):
    return JsonResponse({"count": Event.objects.count()})
