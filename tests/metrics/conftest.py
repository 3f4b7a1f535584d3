import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


class Scraper:
    """Scrapes the live server's /metrics over HTTP, as Prometheus does."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def text(self) -> str:
        response = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {self.token}",
                                                             "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,"
                                                                       "text/plain;version=0.0.4;q=0.4"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    def samples(self, text: str | None = None) -> dict:
        """{(sample name, frozenset(labels)): value}."""
        found = {}
        for family in text_string_to_metric_families(text if text is not None else self.text()):
            for sample in family.samples:
                found[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return found


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def scraper(live_server, metrics_token):
    return Scraper(live_server.url, metrics_token)
