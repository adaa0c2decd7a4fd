"""The web page: double opt-in, preferences and one-click unsubscribe, checked with Starlette's TestClient and
once end to end in real headless Chromium against uvicorn, reading mail from a real SMTP server."""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import urlsplit

import pytest
import uvicorn
from starlette.testclient import TestClient

from digest.config import load_config
from digest.errors import ConfigError, RenderError
from digest.pipeline import send_edition
from digest.store import open_database, session_scope
from digest.store import subscribers as store
from digest.web import CSRF_COOKIE, create_app
from smtp_server import SmtpServer, free_port
from test_deliver import THEMES, add_edition, email_settings

pytestmark = pytest.mark.usefixtures("secret")

LINK = re.compile(r"https?://\S+")


@pytest.fixture
def make_client(write_config, smtp):
    def make(web: str = "", base_url: str = "http://digest.test", templates_dir: str | None = None):
        path = write_config(THEMES + email_settings(smtp) + f"[web]\n{web}\n")
        text = path.read_text().replace('base_url = "http://digest.test"', f'base_url = "{base_url}"')
        if templates_dir:
            text = text.replace("[digest]\n", f'[digest]\ntemplates_dir = "{templates_dir}"\n')
        path.write_text(text)
        config = load_config(path)
        return config, TestClient(create_app(config), follow_redirects=False)

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def csrf(client: TestClient) -> str:
    response = client.get("/")
    return response.cookies.get(CSRF_COOKIE) or client.cookies[CSRF_COOKIE]


def subscribe(client: TestClient, email: str, **fields):
    form = {"email": email, "csrf": csrf(client), "frequency": "daily"} | fields
    return client.post("/subscribe", data=form)


def subscriber(config, email: str):
    with session_scope(open_database(config.database_url)) as session:
        return store.find_subscriber(session, email)


def link_in(message, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    return next(url for url in LINK.findall(text) if urlsplit(url).path == path)


def test_the_form_lists_themes_and_sets_a_csrf_cookie(client):
    _config, client = client
    response = client.get("/")
    assert response.status_code == 200 and CSRF_COOKIE in response.cookies
    assert 'value="Agents"' in response.text and 'value="Other"' in response.text
    assert f'name="csrf" value="{response.cookies[CSRF_COOKIE]}"' in response.text


def test_a_post_without_the_csrf_token_changes_nothing(client):
    config, client = client
    client.get("/")
    response = client.post("/subscribe", data={"email": "a@example.com", "frequency": "daily"})
    assert response.status_code == 403 and subscriber(config, "a@example.com") is None


def test_new_pending_and_confirmed_addresses_get_the_same_answer(client, smtp):
    config, client = client
    with session_scope(open_database(config.database_url)) as session:
        store.add_subscriber(session, "known@example.com", [], "daily", "confirmed")
    answers = [subscribe(client, email) for email in ("new@example.com", "new@example.com", "known@example.com")]

    bodies = {answer.text.replace(email, "ADDRESS") for answer, email in
              zip(answers, ("new@example.com", "new@example.com", "known@example.com"))}
    assert {answer.status_code for answer in answers} == {200} and len(bodies) == 1
    assert [m.recipients for m in smtp.messages] == [["new@example.com"], ["new@example.com"]]
    assert subscriber(config, "known@example.com").status == "confirmed"


def test_the_confirmation_link_confirms_and_a_forged_one_does_not(client, smtp):
    config, client = client
    subscribe(client, "reader@example.com", themes=["Agents"], frequency="weekly")
    link = link_in(smtp.messages[0].message, "/confirm")
    forged = link[:-3] + ("abc" if not link.endswith("abc") else "xyz")

    assert client.get(urlsplit(forged)._replace(scheme="", netloc="").geturl()).status_code == 400
    assert subscriber(config, "reader@example.com").status == "pending"
    assert client.get(link.removeprefix("http://digest.test")).status_code == 200
    found = subscriber(config, "reader@example.com")
    assert (found.status, found.themes, found.frequency) == ("confirmed", ["Agents"], "weekly")


def test_an_expired_confirmation_link_is_refused(make_client, smtp):
    config, client = make_client("confirm_max_age_hours = 0.0001")
    subscribe(client, "late@example.com")
    link = link_in(smtp.messages[0].message, "/confirm").removeprefix("http://digest.test")
    time.sleep(1.5)
    assert client.get(link).status_code == 400
    assert subscriber(config, "late@example.com").status == "pending"


def test_sign_ups_are_limited_per_address_and_per_ip(make_client, smtp):
    _config, client = make_client("subscribe_limit_per_hour = 2")
    first_ip, second_ip = (TestClient(client.app, client=(ip, 40000)) for ip in ("192.0.2.1", "192.0.2.2"))
    assert [subscribe(first_ip, "same@example.com").status_code for _ in range(2)] == [200, 200]
    assert subscribe(second_ip, "same@example.com").status_code == 429  # this address, from anywhere
    assert subscribe(first_ip, "other@example.com").status_code == 429  # anything, from this IP
    assert subscribe(second_ip, "other@example.com").status_code == 200
    assert len(smtp.messages) == 3


def test_an_invalid_address_is_explained(client):
    _config, client = client
    response = subscribe(client, "not-an-address")
    assert response.status_code == 400 and "not a valid email address" in response.text


def unsubscribe_token(config, email: str) -> str:
    from digest.deliver.links import UNSUBSCRIBE, Links

    with session_scope(open_database(config.database_url)) as session:
        found = store.find_subscriber(session, email)
        return Links(config).token(UNSUBSCRIBE, found.id, found.email)


def confirmed(config, email: str) -> None:
    with session_scope(open_database(config.database_url)) as session:
        store.add_subscriber(session, email, [], "daily", "confirmed")


def test_one_click_post_unsubscribes_without_cookie_or_csrf_and_is_repeatable(client):
    config, client = client
    confirmed(config, "leaver@example.com")
    token = unsubscribe_token(config, "leaver@example.com")
    bare = TestClient(client.app, follow_redirects=False)

    answers = [bare.post(f"/unsubscribe/one-click?token={token}", data={"List-Unsubscribe": "One-Click"})
               for _ in range(2)]
    invalid = bare.post("/unsubscribe/one-click?token=forged", data={"List-Unsubscribe": "One-Click"})

    assert [answer.status_code for answer in answers + [invalid]] == [200, 200, 200]
    assert answers[0].text == invalid.text
    assert subscriber(config, "leaver@example.com").status == "unsubscribed"


def test_a_get_on_unsubscribe_links_never_unsubscribes(client):
    config, client = client
    confirmed(config, "stayer@example.com")
    token = unsubscribe_token(config, "stayer@example.com")
    for path in ("/unsubscribe", "/unsubscribe/one-click"):
        page = client.get(f"{path}?token={token}")
        assert page.status_code == 200 and 'method="post"' in page.text
    assert client.get("/unsubscribe").status_code == 400  # the generic link in archive copies
    assert subscriber(config, "stayer@example.com").status == "confirmed"


def test_preferences_need_a_valid_token_and_csrf(client):
    from digest.deliver.links import PREFERENCES, Links

    config, client = client
    confirmed(config, "picky@example.com")
    found = subscriber(config, "picky@example.com")
    token = Links(config).token(PREFERENCES, found.id, found.email)
    form = {"themes": ["Agents"], "frequency": "both"}

    assert client.get("/preferences?token=forged").status_code == 400
    assert client.post(f"/preferences?token={token}", data=form).status_code == 403
    page = client.get(f"/preferences?token={token}")
    saved = client.post(f"/preferences?token={token}", data=form | {"csrf": page.cookies.get(CSRF_COOKIE) or client.cookies[CSRF_COOKIE]})
    assert saved.status_code == 200 and "Saved." in saved.text
    after = subscriber(config, "picky@example.com")
    assert (after.themes, after.frequency) == (["Agents"], "both")


def test_no_route_redirects_anywhere(client):
    _config, client = client
    answers = [
        subscribe(client, "r@example.com", next="https://evil.example/"),
        client.get("/confirm?token=x&next=https://evil.example/"),
        client.get("//evil.example/"),
        client.get("/preferences?next=https://evil.example/"),
    ]
    assert all(not 300 <= answer.status_code < 400 for answer in answers)
    assert all("evil.example" not in answer.headers.get("location", "") for answer in answers)


def test_the_archive_is_served_under_archive(client, tmp_path):
    _config, client = client
    (tmp_path / "digest-output" / "archive").mkdir(parents=True)
    (tmp_path / "digest-output" / "archive" / "index.html").write_text("<h1>All editions</h1>")
    assert "All editions" in client.get("/archive/").text


def test_serving_without_a_secret_is_a_clear_error(config, monkeypatch):
    monkeypatch.delenv("DIGEST_SECRET")
    with pytest.raises(ConfigError, match=r"\$DIGEST_SECRET is not set"):
        create_app(config)


# --- Real browser ----------------------------------------------------------------------------------------------


@pytest.fixture
def live_site(write_config, smtp):
    """uvicorn serving the app on 127.0.0.1 and a free port in a thread; yields (config, base url)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = write_config(THEMES + email_settings(smtp))
    path.write_text(path.read_text().replace('base_url = "http://digest.test"', f'base_url = "{base}"'))
    config = load_config(path)
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield config, base
    server.should_exit = True
    thread.join(10)


def test_a_reader_subscribes_confirms_changes_preferences_and_leaves_in_chromium(live_site, smtp, browser):
    config, base = live_site
    engine = open_database(config.database_url)
    page = browser.new_context(java_script_enabled=False).new_page()

    page.goto(base + "/")
    page.fill("#email", "Reader@Example.com")
    page.check("input[value='Agents']")
    page.check("input[value='both']")
    page.click("button[type=submit]")
    assert "Check your inbox" in page.inner_text("h1")

    wait_for_mail(smtp, 1)
    page.goto(link_in(smtp.messages[0].message, "/confirm"))
    assert "confirmed" in page.inner_text("h1")

    edition_id = add_edition(engine)
    assert send_edition(config, engine, edition_id).sent == 1
    edition_mail = smtp.messages[1].message
    assert edition_mail["To"] == "reader@example.com"
    page.goto(link_in(edition_mail, "/preferences"))
    page.uncheck("input[value='Agents']")
    page.check("input[value='Language models']")
    page.check("input[value='weekly']")
    page.click("button[type=submit]")
    assert "Saved." in page.inner_text("main")
    chosen = subscriber(config, "reader@example.com")
    assert (chosen.themes, chosen.frequency) == (["Language models"], "weekly")

    page.click("text=Unsubscribe from everything")
    assert subscriber(config, "reader@example.com").status == "confirmed"
    page.click("button[type=submit]")
    assert "Unsubscribed" in page.inner_text("h1")
    assert subscriber(config, "reader@example.com").status == "unsubscribed"


def wait_for_mail(smtp: SmtpServer, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(smtp.messages) < count:
        assert time.monotonic() < deadline, "no mail arrived"
        time.sleep(0.05)


def test_a_page_in_templates_dir_replaces_the_bundled_one(make_client, tmp_path):
    (tmp_path / "mine" / "web").mkdir(parents=True)
    (tmp_path / "mine" / "web" / "subscribe.html.j2").write_text(
        '{% extends "web/base.html.j2" %}{% block main %}<h1>Join {{ title }}, our way</h1>{% endblock %}')
    _, client = make_client(templates_dir="mine")

    page = client.get("/")

    assert page.status_code == 200 and "<h1>Join Test digest, our way</h1>" in page.text
    assert 'href="/archive/"' in page.text, "the bundled base layout still frames it"


def test_a_broken_page_template_names_the_file_and_line(make_client, tmp_path):
    (tmp_path / "mine" / "web").mkdir(parents=True)
    (tmp_path / "mine" / "web" / "notice.html.j2").write_text(
        '{% extends "web/base.html.j2" %}\n{% block main %}\n<p>{{ text | no_such_filter }}</p>\n{% endblock %}\n')
    _, client = make_client(templates_dir="mine")

    with pytest.raises(RenderError, match=r"mine/web/notice\.html\.j2, line 3: .*no_such_filter"):
        client.get("/confirm?token=not-a-token")

