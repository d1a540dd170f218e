"""A Django 5 service, written the way many are outside this project: waitress with 8 threads,
psycopg2, the official OpenTelemetry Django and psycopg2 instrumentation. Three scenarios, each
with its fixed twin (testbed/README.md):

- `books/bad`: 50 books listed with their author's name, each author loaded by its own query (an
  N+1 over a foreign key); `books/fixed`: `select_related("author")`.
- `reviews/bad?q=…`: `body__icontains` on 300,000 reviews, which Django runs as
  `UPPER(body::text) LIKE UPPER(…)`, no index can serve; `reviews/fixed?q=…`: the same search on a
  copy of the table with a trigram index on `upper(body)`.
- `events/bad`: every row of `events` (50,000) fetched to answer with their count; `events/fixed`:
  `count()`.

Run: `python serve.py PORT` (spans over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT).
"""

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

# The testbed's virtualenv has psycopg 3 for the FastAPI shop; this service runs on psycopg2, as
# many Django deployments do, and Django picks psycopg 3 whenever it can import it.
sys.modules["psycopg"] = None
sys.path.insert(0, str(Path(__file__).resolve().parent))

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.instrumentation.django import DjangoInstrumentor  # noqa: E402
from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from waitress import serve  # noqa: E402

url = urlparse(os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://"))
settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="testbed",
    ROOT_URLCONF="dj.urls",
    INSTALLED_APPS=["dj"],
    MIDDLEWARE=[],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path.lstrip("/"),
            "USER": url.username,
            "HOST": url.hostname,
            "PORT": url.port,
            "CONN_MAX_AGE": None,
        }
    },
    USE_TZ=True,
)

provider = TracerProvider(resource=Resource.create({"service.name": "django-shop"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
DjangoInstrumentor().instrument(excluded_urls="health,__flush")
Psycopg2Instrumentor().instrument()
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

if __name__ == "__main__":
    serve(application, host="127.0.0.1", port=int(sys.argv[1]), threads=8, _quiet=True)
