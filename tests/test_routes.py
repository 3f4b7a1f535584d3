"""Every API route, as the URL conf has it, answers with and without its trailing slash, so a script never
meets a redirect that drops its POST body; a new app's router that forgets it fails here."""
from django.urls import URLPattern, URLResolver

from pacsportal.api_router import api_urlpatterns


def flatten(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from flatten(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern.regex.pattern)


def test_every_api_route_takes_an_optional_trailing_slash():
    routes = list(flatten(api_urlpatterns))
    assert len(routes) > 10
    for route in routes:
        assert route.endswith("/?$"), f"{route} does not accept both spellings"


def test_with_and_without_the_slash_reach_the_same_view(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", password="pw")
    client.force_login(user)
    for path in ("/api/servers", "/api/servers/", "/api/retrievals", "/api/retrievals/", "/api/echo-jobs",
                 "/api/echo-jobs/"):
        assert client.get(path).status_code == 200, path
